-- Members forgotten so far. Every forget bumps it (inside its transaction, under
-- the exclusive ledger-members lock); the planner reads it with its mark before
-- reading member pages, and a ledger insert that finds it unchanged knows every
-- member it plans for still exists, so it skips the per-row `EXISTS` probe of
-- `members` (a quarter of the insert's server time; see
-- `store::postgres::insert_sends`).
ALTER TABLE planner_state ADD COLUMN forgotten BIGINT NOT NULL DEFAULT 0;
