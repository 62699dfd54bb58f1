-- The catalog read model: products, their variants, and stock per SKU for availability.
-- Written only by the `catalog` projector, with unqualified names, so that a rebuild
-- can clone these tables into another schema (no sequences, foreign keys or triggers).
CREATE SCHEMA catalog;

CREATE TABLE catalog.products (
    product_id    uuid        PRIMARY KEY,
    name          text        NOT NULL,
    description   text        NOT NULL,
    category      text        NOT NULL,
    currency      text        NOT NULL,
    -- The lowest price of an active variant, in minor units; NULL without one.
    price_minor   bigint,
    published     boolean     NOT NULL,
    -- The time of the creating commit, and of the last commit that changed the product.
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- The aggregate version applied last: a replayed event at or below it is skipped.
    last_sequence bigint      NOT NULL CHECK (last_sequence > 0),
    -- Sort keys: products without a price sort last, names ignore case.
    price_key     bigint      GENERATED ALWAYS AS
        (COALESCE(price_minor, 9223372036854775807)) STORED,
    name_key      text        COLLATE "C" GENERATED ALWAYS AS (lower(name)) STORED,
    search        tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A')
        || setweight(to_tsvector('english', description), 'B')
    ) STORED
);

CREATE INDEX products_search ON catalog.products USING gin (search);
CREATE INDEX products_by_price ON catalog.products (price_key, product_id);
CREATE INDEX products_by_name ON catalog.products (name_key, product_id);
CREATE INDEX products_by_newest ON catalog.products (created_at, product_id);
CREATE INDEX products_by_category ON catalog.products (category) WHERE published;

-- Every variant ever added; a retired variant keeps its SKU for ever.
CREATE TABLE catalog.variants (
    sku         text    PRIMARY KEY,
    product_id  uuid    NOT NULL,
    -- The order in which the product's variants were added, from 0.
    ordinal     integer NOT NULL,
    name        text    NOT NULL,
    price_minor bigint  NOT NULL,
    retired     boolean NOT NULL,
    UNIQUE (product_id, ordinal)
);

-- Stock per SKU, kept apart from the variants: inventory events may come before the
-- product that owns the SKU.
CREATE TABLE catalog.sku_stock (
    sku           text   PRIMARY KEY,
    on_hand       bigint NOT NULL CHECK (on_hand >= 0),
    reserved      bigint NOT NULL CHECK (reserved >= 0),
    last_sequence bigint NOT NULL CHECK (last_sequence > 0)
);
