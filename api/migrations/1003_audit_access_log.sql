-- Who looked at what: one row per audit read (CLI or GraphQL), owned by the api crate.
-- Rows are only ever inserted; nothing in shopstream updates or deletes them.
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.access_log (
    access_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- `user:<uuid>` or `system:<name>`.
    actor       text        NOT NULL,
    -- verify, history, state, access.
    action      text        NOT NULL,
    target_type text        NULL,
    target_id   text        NULL,
    arguments   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    accessed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX access_log_accessed_at_idx ON audit.access_log (accessed_at DESC);
