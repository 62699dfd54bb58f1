-- Accounts and refresh tokens, owned by the api crate.
-- Versions start at 1001 so they never collide with the projections' 0001..0099 in the
-- shared _sqlx_migrations table; both migrators ignore each other's versions.
CREATE SCHEMA IF NOT EXISTS accounts;

CREATE TABLE accounts.accounts (
    account_id    uuid        PRIMARY KEY,
    -- Stored trimmed and lowercased (by the api, with Rust's Unicode rules), so the
    -- unique constraint is case-insensitive.
    email         text        NOT NULL UNIQUE,
    -- An argon2id PHC string, never the password.
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('customer', 'admin', 'auditor', 'operator')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per refresh token ever issued. A family is one login's chain of rotations:
-- presenting a token that was already used revokes the whole family.
CREATE TABLE accounts.refresh_tokens (
    -- sha256 of the token; the token itself is never stored.
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    account_id uuid        NOT NULL REFERENCES accounts.accounts (account_id) ON DELETE CASCADE,
    family_id  uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz NULL,
    revoked_at timestamptz NULL
);

CREATE INDEX refresh_tokens_family_idx ON accounts.refresh_tokens (family_id);
CREATE INDEX refresh_tokens_account_idx ON accounts.refresh_tokens (account_id);
