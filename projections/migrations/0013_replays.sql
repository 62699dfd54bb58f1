-- Operator replays (`shopstream replay`): a range of the log re-delivered to one
-- projector or to the saga in replay mode. One row per replay; `cursor` is the last
-- stream position handled and advances in the same transaction as what the chunk
-- wrote, so an interrupted replay resumes exactly where it stopped.
CREATE TABLE replays (
    id               uuid        PRIMARY KEY,
    -- The projector's name, or `saga`.
    target           text        NOT NULL,
    from_position    bigint      NOT NULL CHECK (from_position >= 1),
    to_position      bigint      NOT NULL CHECK (to_position >= from_position),
    aggregate_type   text        NULL,
    aggregate_id     text        NULL,
    cursor           bigint      NOT NULL,
    -- Commits of the selection handed to the target, and passed over because the live
    -- consumer has the aggregate parked in the dead-letter queue.
    delivered        bigint      NOT NULL DEFAULT 0,
    skipped_parked   bigint      NOT NULL DEFAULT 0,
    -- What the target reported, by kind (for the saga: already handled, would act...).
    outcome          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Up to 1,000 findings worth an operator's attention (the saga's "would act").
    findings         jsonb       NOT NULL DEFAULT '[]'::jsonb,
    status           text        NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'finished', 'abandoned')),
    actor            text        NOT NULL,
    reason           text        NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz NULL,
    CHECK (cursor >= from_position - 1 AND cursor <= to_position)
);

-- At most one unfinished replay per target: a second run resumes it or is refused.
CREATE UNIQUE INDEX replays_one_running_per_target ON replays (target) WHERE status = 'running';
CREATE INDEX replays_by_start ON replays (started_at DESC);
