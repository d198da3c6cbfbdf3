-- Migration 8: anonymous call records (one per call) and the daily counts they are folded into
-- after the retention period. No caller number, key or hash is ever stored here.
CREATE TABLE IF NOT EXISTS call_records (
    id                 text PRIMARY KEY,          -- random per call: a replayed write is a no-op
    started_at         timestamptz NOT NULL,
    entry_kind         text NOT NULL,
    entry_line       text,                      -- the helpline's own number that was dialled
    region             text,
    partner            text,
    partner_via        text,
    ivr_path           text[] NOT NULL DEFAULT '{}',
    language           text,
    queue              text,
    wait_seconds       double precision,
    offered            integer NOT NULL DEFAULT 0,
    ring_no_answer     integer NOT NULL DEFAULT 0,
    answered_by        text,
    talk_seconds       double precision,
    time_limit_reached boolean NOT NULL DEFAULT false,
    transfer_to        text,
    transfer_result    text,
    overflowed         boolean NOT NULL DEFAULT false,
    outcome            text NOT NULL,
    returning_today      boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS call_records_started_at ON call_records (started_at);

CREATE TABLE IF NOT EXISTS call_daily_counts (
    day             date NOT NULL,
    entry_kind      text NOT NULL,
    partner         text NOT NULL DEFAULT '',
    language        text NOT NULL DEFAULT '',
    queue           text NOT NULL DEFAULT '',
    outcome         text NOT NULL,
    calls           integer NOT NULL,
    answered_60     integer NOT NULL,
    wait_seconds    double precision NOT NULL,
    talk_seconds    double precision NOT NULL,
    returning_today  integer NOT NULL,
    PRIMARY KEY (day, entry_kind, partner, language, queue, outcome)
);
