-- Source schema of engagement_db (the seed's DDL plus what CDC needs). Idempotent.
CREATE TABLE IF NOT EXISTS content (
    id UUID PRIMARY KEY,
    slug TEXT NOT NULL,
    title TEXT NOT NULL,
    content_type TEXT NOT NULL,
    length_seconds INT,
    publish_ts TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS engagement_events (
    id SERIAL PRIMARY KEY,
    content_id UUID REFERENCES content(id),
    user_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    event_ts TIMESTAMP NOT NULL,
    duration_ms INT,
    device TEXT,
    raw_payload JSONB
);

-- Updates and deletes must carry the full before-image.
ALTER TABLE content REPLICA IDENTITY FULL;
ALTER TABLE engagement_events REPLICA IDENTITY FULL;

-- Debezium's heartbeat.action.query writes here so an idle source still advances the slot.
CREATE TABLE IF NOT EXISTS cdc_heartbeat (
    id INT PRIMARY KEY,
    beat_ts TIMESTAMPTZ NOT NULL
);
INSERT INTO cdc_heartbeat (id, beat_ts) VALUES (1, now()) ON CONFLICT (id) DO NOTHING;
