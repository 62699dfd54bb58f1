-- The inventory read model: stock per SKU, every movement, and open reservations.
-- Written only by the `inventory` projector, with unqualified names, so that a rebuild
-- can clone these tables into another schema (no sequences, foreign keys or triggers).
CREATE SCHEMA inventory;

-- Stock per SKU (the inventory aggregate id).
CREATE TABLE inventory.stock_levels (
    sku              text        PRIMARY KEY,
    on_hand          bigint      NOT NULL CHECK (on_hand >= 0),
    reserved         bigint      NOT NULL CHECK (reserved >= 0),
    available        bigint      GENERATED ALWAYS AS (on_hand - reserved) STORED,
    last_movement_at timestamptz NOT NULL,
    -- The aggregate version applied last: a replayed event at or below it is skipped.
    last_sequence    bigint      NOT NULL CHECK (last_sequence > 0)
);

-- One row per inventory event, keyed by where it sits in the log.
CREATE TABLE inventory.movements (
    position        bigint      NOT NULL,
    event_index     integer     NOT NULL,
    sku             text        NOT NULL,
    kind            text        NOT NULL
        CHECK (kind IN ('received', 'adjusted', 'reserved', 'released', 'committed')),
    -- The event's quantity (signed for adjustments) and its signed effect on each count.
    quantity        bigint      NOT NULL,
    on_hand_change  bigint      NOT NULL,
    reserved_change bigint      NOT NULL,
    order_id        uuid,
    reference       text,
    reason          text,
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (position, event_index)
);

-- A SKU's history, newest first, by keyset.
CREATE INDEX movements_by_sku ON inventory.movements (sku, position DESC, event_index DESC);

-- Units currently held for an order; released and committed reservations are removed.
CREATE TABLE inventory.reservations (
    sku         text        NOT NULL,
    order_id    uuid        NOT NULL,
    quantity    bigint      NOT NULL CHECK (quantity > 0),
    reserved_at timestamptz NOT NULL,
    PRIMARY KEY (sku, order_id)
);

CREATE INDEX reservations_by_order ON inventory.reservations (order_id);
