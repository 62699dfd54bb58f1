-- Where each projector has got to in the EVENTS stream.
-- A projector writes its position in the same transaction as its read-model change,
-- so a crash between the two cannot apply an event twice or skip one.
CREATE TABLE projector_positions (
    projector   text        PRIMARY KEY,
    position    bigint      NOT NULL CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
