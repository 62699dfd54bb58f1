-- The notifier: one customer notification per order confirmed, order cancelled and refund
-- issued, enqueued in a transactional outbox and sent by the dispatcher.

-- The notifier's own state, a pure function of the log, rebuilt like any read model.
CREATE SCHEMA notifications;

-- Who placed each order: the customer every notification about the order goes to.
CREATE TABLE notifications.orders (
    order_id         uuid        PRIMARY KEY,
    customer_id      uuid        NOT NULL,
    total_minor      bigint      NOT NULL,
    currency         text        NOT NULL,
    placed_position  bigint      NOT NULL CHECK (placed_position > 0)
);

-- Which order each authorised payment pays, so that a refund reaches its customer.
CREATE TABLE notifications.payments (
    payment_id           uuid    PRIMARY KEY,
    order_id             uuid    NOT NULL,
    authorised_position  bigint  NOT NULL CHECK (authorised_position > 0)
);

-- The outbox is not a read model: it records effects, holds the dispatcher's progress
-- and must survive a rebuild of the `notifications` schema, so it lives in a schema of
-- its own that the notifier writes with qualified names (the one exception to the
-- own-schema rule). Only live deliveries enqueue; the key is the event id, so a
-- redelivered event never enqueues twice.
CREATE SCHEMA outbox;

CREATE TABLE outbox.notifications (
    id               uuid        PRIMARY KEY,
    position         bigint      NOT NULL CHECK (position > 0),
    event_index      integer     NOT NULL CHECK (event_index >= 0),
    kind             text        NOT NULL
                     CHECK (kind IN ('order_confirmed', 'order_cancelled', 'refund_issued')),
    customer_id      uuid        NOT NULL,
    order_id         uuid        NOT NULL,
    payload          jsonb       NOT NULL,
    occurred_at      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now()
);

-- What the dispatcher claims: unsent rows that are due, oldest first.
CREATE INDEX notifications_due
    ON outbox.notifications (next_attempt_at, position, event_index)
    WHERE sent_at IS NULL;

-- A customer's notifications, newest first.
CREATE INDEX notifications_by_customer
    ON outbox.notifications (customer_id, position DESC, event_index DESC);
