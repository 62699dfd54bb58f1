-- The sagas read model: one row per order saga with where it stands, and one row per
-- saga event. Written only by the `sagas` projector (projections::sagas). No sequences,
-- foreign keys, triggers or functions: a rebuild clones these tables with
-- `CREATE TABLE ... (LIKE ... INCLUDING ALL)`.
CREATE SCHEMA sagas;

CREATE TABLE sagas.instances (
    -- The saga's id, which is its order's id.
    saga_id             uuid        PRIMARY KEY,
    order_id            uuid        NOT NULL,
    customer_id         uuid        NOT NULL,
    payment_id          uuid        NOT NULL,
    -- reserving, authorising, completing, completed, compensating, compensated or
    -- compensation_failed (the domain's Phase::as_str).
    phase               text        NOT NULL,
    -- Why the saga compensates, compensated or is parked.
    reason              text,
    -- The compensation step that kept failing and its last error, when parked.
    failed_step         text,
    last_error          text,
    -- When the current forward phase gives up.
    deadline_at         timestamptz,
    -- Who drives the saga while not at rest: trigger:<position> or operator:<actor>.
    owner               text,
    -- customer, system or admin, once the saga noticed a cancellation.
    cancelled_by        text,
    compensation_rounds integer     NOT NULL,
    amount_minor        bigint      NOT NULL,
    currency            text        NOT NULL,
    started_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- The aggregate version of the last event applied: replays are skipped by it.
    version             bigint      NOT NULL,
    -- The stream position of the last commit applied.
    position            bigint      NOT NULL,
    -- The saga as the domain's OrderSaga serialises it (card token withheld), which the
    -- projector folds the next events onto. Not read by queries.
    state               jsonb       NOT NULL
);

-- Listing newest first, per phase and overall.
CREATE INDEX instances_by_phase ON sagas.instances (phase, updated_at DESC, saga_id DESC);
CREATE INDEX instances_by_updated ON sagas.instances (updated_at DESC, saga_id DESC);
-- Sagas past their deadline: only forward phases have one.
CREATE INDEX instances_by_deadline ON sagas.instances (deadline_at)
    WHERE deadline_at IS NOT NULL;

-- One row per saga event, keyed by the saga and its version.
CREATE TABLE sagas.timeline (
    saga_id    uuid        NOT NULL,
    version    bigint      NOT NULL,
    position   bigint      NOT NULL,
    -- The event type, such as SagaStepFailed.
    event_type text        NOT NULL,
    -- The event's fields (the card token left out).
    detail     jsonb       NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (saga_id, version)
);
