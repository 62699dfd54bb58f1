-- The storefront's own state, beside the read models: customers' carts (not events:
-- nothing is decided on a cart until an order is placed from it) and the idempotency
-- keys mutations were called with.
CREATE SCHEMA IF NOT EXISTS storefront;

CREATE TABLE storefront.carts (
    cart_id     uuid        PRIMARY KEY,
    customer_id uuid        NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE storefront.cart_lines (
    cart_id  uuid        NOT NULL REFERENCES storefront.carts ON DELETE CASCADE,
    sku      text        NOT NULL,
    quantity integer     NOT NULL CHECK (quantity > 0 AND quantity <= 10000),
    line_no  integer     NOT NULL,
    PRIMARY KEY (cart_id, sku)
);

-- One row per (caller, operation, key): the input it was first used with, so the same
-- key with other input is refused instead of silently answered with the first result.
CREATE TABLE storefront.idempotency_keys (
    principal  uuid        NOT NULL,
    operation  text        NOT NULL,
    key        text        NOT NULL,
    request    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, operation, key)
);
