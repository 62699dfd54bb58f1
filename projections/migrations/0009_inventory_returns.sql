-- Committed units can come back into stock (`CommittedStockReturned`, when a confirmed
-- order is cancelled before it ships): the movement kind `returned`.
-- `movements_kind_check` is the name PostgreSQL gave the column's CHECK in 0004, and
-- a rebuild's `LIKE ... INCLUDING ALL` keeps it.
ALTER TABLE inventory.movements
    DROP CONSTRAINT movements_kind_check,
    ADD CONSTRAINT movements_kind_check
        CHECK (kind IN ('received', 'adjusted', 'reserved', 'released', 'committed', 'returned'));
