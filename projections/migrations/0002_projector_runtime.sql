-- The projector runtime: fencing, versions and lag on the position row, and the
-- sequenced dead-letter queue shared by every consumer of the log (projectors, saga).

ALTER TABLE projector_positions
    -- Bumped by each instance that becomes the active one; every apply transaction
    -- checks it, so an instance that lost leadership cannot write (fencing token).
    ADD COLUMN epoch          bigint      NOT NULL DEFAULT 0,
    -- The projection code version that built the live tables.
    ADD COLUMN version        integer     NOT NULL DEFAULT 0,
    -- When the commit at `position` was written to the log (for lag in seconds).
    ADD COLUMN last_event_at  timestamptz,
    -- Deliveries that arrived out of sequence and forced a resynchronisation.
    ADD COLUMN gaps_detected  bigint      NOT NULL DEFAULT 0;

-- One row per parked commit. A commit that failed heads its aggregate's queue
-- (`blocked_by` NULL); every later commit of the same aggregate for the same consumer
-- is parked behind it (`blocked_by` = the head's position) until an operator acts.
CREATE TABLE dead_letters (
    id                 uuid        PRIMARY KEY,
    consumer           text        NOT NULL,
    position           bigint      NOT NULL,
    aggregate_type     text        NOT NULL,
    aggregate_id       text        NOT NULL,
    blocked_by         bigint,
    error              text        NOT NULL,
    error_fingerprint  text        NOT NULL,
    attempts           integer     NOT NULL CHECK (attempts >= 0),
    mode               text        NOT NULL,
    -- The raw message as read from the stream, so that a retry needs no NATS and a
    -- payload that is not even JSON can still be shown.
    payload            bytea       NOT NULL,
    parked_at          timestamptz NOT NULL DEFAULT now(),
    status             text        NOT NULL DEFAULT 'parked'
                       CHECK (status IN ('parked', 'applied', 'skipped', 'discarded', 'superseded')),
    resolved_at        timestamptz
);

CREATE UNIQUE INDEX dead_letters_parked_once
    ON dead_letters (consumer, position) WHERE status = 'parked';
CREATE INDEX dead_letters_by_aggregate
    ON dead_letters (consumer, aggregate_type, aggregate_id, position) WHERE status = 'parked';

-- Every operator action on the queue: who, when, why, and what it did.
CREATE TABLE dead_letter_actions (
    id              uuid        PRIMARY KEY,
    consumer        text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('retry', 'skip', 'discard')),
    actor           text        NOT NULL,
    reason          text        NOT NULL,
    outcome         text        NOT NULL,
    positions       bigint[]    NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letter_actions_by_consumer ON dead_letter_actions (consumer, at);
