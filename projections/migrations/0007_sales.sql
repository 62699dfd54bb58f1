-- The sales analytics read model. Written only by the `sales` projector
-- (projections::sales), from order events alone; it keeps the little order data it
-- needs (status, lines) in its own tables instead of reading the orders schema.
-- No sequences, foreign keys, triggers or functions.
CREATE SCHEMA sales;

CREATE TABLE sales.orders (
    order_id      uuid        PRIMARY KEY,
    currency      text        NOT NULL,
    status        text        NOT NULL,
    placed_at     timestamptz NOT NULL,
    -- UTC days.
    placed_on     date        NOT NULL,
    confirmed_on  date,
    cancelled_on  date,
    -- The aggregate version of the last order event applied: replays are skipped by it.
    last_sequence bigint      NOT NULL
);

CREATE INDEX sales_orders_by_placed_on ON sales.orders (placed_on);

CREATE TABLE sales.order_lines (
    order_id         uuid   NOT NULL,
    sku              text   NOT NULL,
    quantity         bigint NOT NULL,
    line_total_minor bigint NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- Per UTC day and currency; see projections::sales for when each figure counts.
CREATE TABLE sales.daily (
    day                 date   NOT NULL,
    currency            text   NOT NULL,
    orders_placed       bigint NOT NULL,
    orders_confirmed    bigint NOT NULL,
    orders_cancelled    bigint NOT NULL,
    units_sold          bigint NOT NULL,
    gross_revenue_minor bigint NOT NULL,
    refunded_minor      bigint NOT NULL,
    net_revenue_minor   bigint GENERATED ALWAYS AS (gross_revenue_minor - refunded_minor) STORED,
    PRIMARY KEY (day, currency)
);

-- Per UTC day, SKU and currency: what confirmed orders sold.
CREATE TABLE sales.daily_skus (
    day           date   NOT NULL,
    sku           text   NOT NULL,
    currency      text   NOT NULL,
    units_sold    bigint NOT NULL,
    revenue_minor bigint NOT NULL,
    orders        bigint NOT NULL,
    PRIMARY KEY (day, sku, currency)
);

-- How many orders are in each status now, adjusted on every transition.
CREATE TABLE sales.status_counts (
    status text   PRIMARY KEY,
    orders bigint NOT NULL
);
