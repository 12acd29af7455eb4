-- almanac schema, SQLite. Instants are INTEGER microseconds since the Unix epoch (UTC).

CREATE TABLE members (
    id                  INTEGER PRIMARY KEY,
    external_id         TEXT    NOT NULL UNIQUE,
    openid              TEXT,
    name                TEXT,
    phone               TEXT,            -- E.164
    city                TEXT,
    province            TEXT,
    lat                 REAL,
    lon                 REAL,
    ip                  TEXT,
    lang                TEXT,
    tags                TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    attrs               TEXT    NOT NULL DEFAULT '{}',   -- JSON object of strings
    opted_out_at        INTEGER,
    last_interaction_at INTEGER,
    -- cached resolution
    place_city_id       INTEGER,
    place_tz            TEXT,
    place_source        TEXT,
    place_confidence    REAL,
    place_distance_km   REAL,
    unresolved_reason   TEXT,
    data_version        TEXT,            -- geo data version of the resolution; NULL = never resolved
    created_at          INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    updated_at          INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
);
CREATE INDEX members_openid ON members (openid) WHERE openid IS NOT NULL;

CREATE TABLE campaign_state (
    campaign_id  TEXT    PRIMARY KEY,
    paused       INTEGER NOT NULL DEFAULT 0,
    content_hash TEXT,
    updated_at   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
);

-- The delivery ledger: one row per (campaign, occurrence, member).
CREATE TABLE sends (
    id                  INTEGER PRIMARY KEY,
    campaign_id         TEXT    NOT NULL,
    occurrence          TEXT    NOT NULL,
    member_id           INTEGER REFERENCES members (id) ON DELETE SET NULL,  -- NULL once forgotten
    due_at              INTEGER NOT NULL,
    channel             TEXT    NOT NULL,
    lang                TEXT    NOT NULL,
    variant             TEXT    NOT NULL,
    text                TEXT,                                               -- NULL once forgotten
    status              TEXT    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    last_error          TEXT,
    provider_message_id TEXT,
    sent_at             INTEGER,
    UNIQUE (campaign_id, occurrence, member_id)
);
CREATE INDEX sends_pending ON sends (due_at) WHERE status = 'pending';
CREATE INDEX sends_claimed ON sends (lease_expires_at) WHERE status = 'claimed';
CREATE INDEX sends_member ON sends (member_id, due_at);
CREATE INDEX sends_status ON sends (status);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    detail TEXT    NOT NULL
);

CREATE TABLE wechat_tokens (
    app_id     TEXT    PRIMARY KEY,
    token      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
