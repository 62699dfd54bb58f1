-- Operators act on parked sagas too: record their own words (resume, compensate)
-- instead of passing them off as a retry.
ALTER TABLE dead_letter_actions DROP CONSTRAINT dead_letter_actions_action_check;
ALTER TABLE dead_letter_actions ADD CONSTRAINT dead_letter_actions_action_check
    CHECK (action IN ('retry', 'skip', 'discard', 'resume', 'compensate'));
