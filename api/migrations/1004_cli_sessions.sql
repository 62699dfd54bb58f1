-- Sign-ins of the shopstream command line, one row per `shopstream login`.
-- The operator and auditor commands look the caller up here on every run, joined to
-- the account's current role, so a role change or a logout applies at once.
CREATE TABLE accounts.cli_sessions (
    -- sha256 of the token; the token itself is never stored.
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    account_id uuid        NOT NULL REFERENCES accounts.accounts (account_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NULL,
    CHECK (expires_at > created_at)
);

CREATE INDEX cli_sessions_account_idx ON accounts.cli_sessions (account_id);
