-- When this ledger first saw each campaign (on the daemon's clock): the planner
-- never plans an occurrence that fell due before, less the campaign's
-- `catch_up`, so loading a campaign does not send last week's push.
CREATE TABLE campaign_seen (
    campaign_id   TEXT        COLLATE "C" PRIMARY KEY,
    first_seen_at TIMESTAMPTZ NOT NULL
);
