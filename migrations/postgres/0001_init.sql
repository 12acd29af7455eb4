-- almanac schema, PostgreSQL.

CREATE TABLE members (
    id                  BIGSERIAL PRIMARY KEY,
    external_id         TEXT        NOT NULL UNIQUE,
    openid              TEXT,
    name                TEXT,
    phone               TEXT,            -- E.164
    city                TEXT,
    province            TEXT,
    lat                 DOUBLE PRECISION,
    lon                 DOUBLE PRECISION,
    ip                  TEXT,
    lang                TEXT,
    tags                JSONB       NOT NULL DEFAULT '[]',
    attrs               JSONB       NOT NULL DEFAULT '{}',
    opted_out_at        TIMESTAMPTZ,
    last_interaction_at TIMESTAMPTZ,
    -- cached resolution
    place_city_id       BIGINT,
    place_tz            TEXT,
    place_source        TEXT,
    place_confidence    DOUBLE PRECISION,
    place_distance_km   DOUBLE PRECISION,
    unresolved_reason   TEXT,
    data_version        TEXT,            -- geo data version of the resolution; NULL = never resolved
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX members_openid ON members (openid) WHERE openid IS NOT NULL;

CREATE TABLE campaign_state (
    campaign_id  TEXT        PRIMARY KEY,
    paused       BOOLEAN     NOT NULL DEFAULT false,
    content_hash TEXT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The delivery ledger: one row per (campaign, occurrence, member).
CREATE TABLE sends (
    id                  BIGSERIAL   PRIMARY KEY,
    campaign_id         TEXT        NOT NULL,
    occurrence          TEXT        NOT NULL,
    member_id           BIGINT      REFERENCES members (id) ON DELETE SET NULL,  -- NULL once forgotten
    due_at              TIMESTAMPTZ NOT NULL,
    channel             TEXT        NOT NULL,
    lang                TEXT        NOT NULL,
    variant             TEXT        NOT NULL,
    text                TEXT,                                                  -- NULL once forgotten
    status              TEXT        NOT NULL,
    attempts            INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at     TIMESTAMPTZ NOT NULL,
    lease_owner         TEXT,
    lease_expires_at    TIMESTAMPTZ,
    last_error          TEXT,
    provider_message_id TEXT,
    sent_at             TIMESTAMPTZ,
    UNIQUE (campaign_id, occurrence, member_id)
);
CREATE INDEX sends_pending ON sends (due_at) WHERE status = 'pending';
CREATE INDEX sends_claimed ON sends (lease_expires_at) WHERE status = 'claimed';
CREATE INDEX sends_member ON sends (member_id, due_at);
CREATE INDEX sends_status ON sends (status);

CREATE TABLE audit_log (
    id     BIGSERIAL   PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor  TEXT        NOT NULL,
    action TEXT        NOT NULL,
    target TEXT        NOT NULL,
    detail TEXT        NOT NULL
);

CREATE TABLE wechat_tokens (
    app_id     TEXT        PRIMARY KEY,
    token      TEXT        NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
