-- The orders read model: one row per order, its lines, its status timeline, and the
-- payments seen for it. Written only by the `orders` projector (projections::orders).
-- No sequences, foreign keys, triggers or functions: a rebuild clones these tables with
-- `CREATE TABLE ... (LIKE ... INCLUDING ALL)`.
CREATE SCHEMA orders;

CREATE TABLE orders.orders (
    order_id            uuid        PRIMARY KEY,
    customer_id         uuid        NOT NULL,
    status              text        NOT NULL,
    -- none, authorised, declined, captured, voided or refunded.
    payment_state       text        NOT NULL,
    payment_id          uuid,
    currency            text        NOT NULL,
    subtotal_minor      bigint      NOT NULL,
    total_minor         bigint      NOT NULL,
    line_count          integer     NOT NULL,
    item_count          bigint      NOT NULL,
    carrier             text,
    tracking            text,
    shipped_at          timestamptz,
    delivered_at        timestamptz,
    cancellation_reason text,
    cancelled_by        text,
    cancelled_at        timestamptz,
    refunded_minor      bigint,
    refund_reason       text,
    refunded_at         timestamptz,
    placed_at           timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- The aggregate version of the last order event applied: replays are skipped by it.
    last_sequence       bigint      NOT NULL
);

-- Keyset pagination, newest first: per customer, per status and overall.
CREATE INDEX orders_by_customer ON orders.orders (customer_id, placed_at DESC, order_id DESC);
CREATE INDEX orders_by_status ON orders.orders (status, placed_at DESC, order_id DESC);
CREATE INDEX orders_by_placed ON orders.orders (placed_at DESC, order_id DESC);

CREATE TABLE orders.order_lines (
    order_id         uuid    NOT NULL,
    -- The line's index in `OrderPlaced`, from 0.
    line_no          integer NOT NULL,
    sku              text    NOT NULL,
    quantity         bigint  NOT NULL,
    unit_price_minor bigint  NOT NULL,
    line_total_minor bigint  NOT NULL,
    currency         text    NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- One row per status transition, keyed by where it happened in the log.
CREATE TABLE orders.status_timeline (
    order_id    uuid        NOT NULL,
    position    bigint      NOT NULL,
    event_index integer     NOT NULL,
    status      text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    reason      text,
    PRIMARY KEY (order_id, position, event_index)
);

-- Which order each payment pays: capture, void and refund events name only the payment.
CREATE TABLE orders.order_payments (
    payment_id    uuid   PRIMARY KEY,
    order_id      uuid   NOT NULL,
    -- The aggregate version of the last payment event applied.
    last_sequence bigint NOT NULL
);
