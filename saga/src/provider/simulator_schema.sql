-- The simulated payment provider's own ledger. It lives beside the read models but
-- belongs to the "outside world": nothing else reads or writes these tables.
CREATE SCHEMA IF NOT EXISTS payment_simulator;

-- One row per authorise idempotency key. A void that arrives before the authorise
-- leaves a tombstone here (state 'voided', no order), so the late authorise is refused.
CREATE TABLE IF NOT EXISTS payment_simulator.authorisations (
    idempotency_key TEXT PRIMARY KEY,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'authorised', 'declined', 'voided', 'captured')),
    payment_id UUID,
    order_id UUID,
    card_token TEXT,
    amount_minor BIGINT NOT NULL DEFAULT 0,
    currency TEXT,
    reference TEXT,
    decline_reason TEXT,
    injected BOOLEAN NOT NULL DEFAULT FALSE,
    -- A pending ('tok_hang') authorisation completes on a retry after this moment, so a
    -- hanging call killed with its process does not leave the key pending for ever.
    pending_until TIMESTAMPTZ,
    void_key TEXT,
    void_outcome TEXT CHECK (void_outcome IN ('voided', 'nothing_to_void')),
    captured_minor BIGINT NOT NULL DEFAULT 0,
    refunded_minor BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS authorisations_by_order
    ON payment_simulator.authorisations (order_id, created_at);

-- Authorise calls per idempotency key, counted even when they fail ('tok_fail_<N>').
-- Its row lock also serialises concurrent authorise calls with the same key.
CREATE TABLE IF NOT EXISTS payment_simulator.authorise_attempts (
    idempotency_key TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS payment_simulator.captures (
    idempotency_key TEXT PRIMARY KEY,
    authorisation_key TEXT NOT NULL
        REFERENCES payment_simulator.authorisations (idempotency_key),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS payment_simulator.refunds (
    idempotency_key TEXT PRIMARY KEY,
    authorisation_key TEXT NOT NULL
        REFERENCES payment_simulator.authorisations (idempotency_key),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
