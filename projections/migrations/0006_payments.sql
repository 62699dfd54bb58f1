-- The payments read model: one row per payment with its running totals, and one row per
-- operation the provider reported. Written only by the `payments` projector
-- (projections::payments). No sequences, foreign keys, triggers or functions.
CREATE SCHEMA payments;

CREATE TABLE payments.payments (
    payment_id         uuid        PRIMARY KEY,
    order_id           uuid        NOT NULL,
    -- authorised, declined, captured, partially_refunded, refunded or voided.
    status             text        NOT NULL,
    currency           text        NOT NULL,
    -- The amount authorised, or asked for when declined.
    amount_minor       bigint      NOT NULL,
    captured_minor     bigint      NOT NULL,
    refunded_minor     bigint      NOT NULL,
    method             text,
    provider_reference text,
    decline_reason     text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    -- The aggregate version of the last event applied: replays are skipped by it.
    last_sequence      bigint      NOT NULL
);

CREATE INDEX payments_by_order ON payments.payments (order_id, created_at, payment_id);

-- One row per payment event, keyed by the payment and its version.
CREATE TABLE payments.operations (
    payment_id         uuid        NOT NULL,
    sequence           bigint      NOT NULL,
    position           bigint      NOT NULL,
    event_index        integer     NOT NULL,
    -- authorisation, decline, capture, void or refund.
    kind               text        NOT NULL,
    amount_minor       bigint,
    currency           text        NOT NULL,
    occurred_at        timestamptz NOT NULL,
    reason             text,
    provider_reference text,
    refund_id          uuid,
    PRIMARY KEY (payment_id, sequence)
);
