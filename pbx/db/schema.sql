-- Schema version 1 of helpline-pbx. Applied once by pbx/db/migrate.py; later changes go into
-- new numbered migrations, never into this file.
--
-- Anonymity by construction: no table has a column for a caller's number or any other caller
-- identifier. Events carry anonymous indicators only.

CREATE TABLE volunteers (
    id           bigserial PRIMARY KEY,
    username     text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    display_name text NOT NULL DEFAULT '',
    realm        text NOT NULL,
    -- H(username:realm:password) per digest algorithm: the password itself is never stored.
    ha1_md5      text NOT NULL,
    ha1_sha256   text NOT NULL,
    -- Salted scrypt/pbkdf2 hash of the handset login PIN ("scheme$params$salt$hash"), if any.
    pin_hash     text,
    languages    text[] NOT NULL DEFAULT '{}',
    region       text,
    skills       text[] NOT NULL DEFAULT '{}',
    disabled     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Registrar bindings of volunteers' handsets (RFC 3261 section 10), written behind so they
-- survive a service restart. received_* is where the REGISTER came from (NAT traversal).
CREATE TABLE registrations (
    aor           text NOT NULL,
    contact_uri   text NOT NULL,
    instance_id   text,
    reg_id        integer,
    received_host text NOT NULL,
    received_port integer NOT NULL CHECK (received_port BETWEEN 1 AND 65535),
    transport     text NOT NULL,
    expires_at    timestamptz NOT NULL,
    call_id       text NOT NULL,
    cseq          bigint NOT NULL,
    user_agent    text,
    PRIMARY KEY (aor, contact_uri)
);
CREATE INDEX registrations_expires_at ON registrations (expires_at);

-- Anonymous call/queue/volunteer events for statistics.
CREATE TABLE events (
    id   bigserial PRIMARY KEY,
    at   timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_kind_at ON events (kind, at);

-- Write-behind batches already committed: a batch retried after an ambiguous failure (commit
-- sent, connection lost before the answer) or replayed from the journal is applied only once.
CREATE TABLE writebehind_batches (
    batch_id   uuid PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX writebehind_batches_applied_at ON writebehind_batches (applied_at);
