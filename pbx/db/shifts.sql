-- Schema version 2: volunteers' shift states, so that a restart logs nobody out.
-- One row per volunteer the service has seen on shift (logging out keeps the row, with state
-- 'logged_out'); written behind on every change. No caller data: a state names no call.
CREATE TABLE shifts (
    username           text PRIMARY KEY,
    state              text NOT NULL,
    state_since        timestamptz NOT NULL,
    idle_since         timestamptz NOT NULL,
    consecutive_misses integer NOT NULL DEFAULT 0,
    wrap_up_until      timestamptz,
    pause_reason       text,
    lapsed_since       timestamptz,
    updated_at         timestamptz NOT NULL
);
