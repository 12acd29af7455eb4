-- One row: which replica plans now (a lease) and how far the ledger is planned
-- with which campaign set, so replicas do not each plan every member.
CREATE TABLE planner_state (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    owner            TEXT,
    lease_expires_at INTEGER,
    planned_until    INTEGER,
    campaigns_hash   TEXT,
    -- Bumped when members change: a tick that started before keeps its window
    -- unrecorded, so the next tick plans the new members from now.
    generation       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO planner_state (id) VALUES (1);
