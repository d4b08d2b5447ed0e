-- Up Migration
-- Key-value entries with TTL and compare-and-set, and the change log that
-- Watch reads. Keys sort bytewise (COLLATE "C"): List is in key order and a
-- prefix scan is a range scan.

CREATE TABLE kv_entries (
  key           text COLLATE "C" PRIMARY KEY,
  bytes_value   bytea,
  json_value    jsonb,
  version       bigint NOT NULL,
  mod_revision  bigint NOT NULL,
  session_id    text NOT NULL DEFAULT '',
  create_time   timestamptz NOT NULL DEFAULT now(),
  update_time   timestamptz NOT NULL DEFAULT now(),
  expire_time   timestamptz,
  CHECK ((bytes_value IS NULL) <> (json_value IS NULL))
);
CREATE INDEX kv_entries_session_idx ON kv_entries (session_id) WHERE session_id <> '';
CREATE INDEX kv_entries_expire_time_idx ON kv_entries (expire_time) WHERE expire_time IS NOT NULL;

-- The last revision handed out, and the newest revision compacted away.
-- Revisions are allocated from this row inside the changing transaction and
-- its lock is held until commit, so revisions become visible in order.
CREATE TABLE kv_revisions (
  id                boolean PRIMARY KEY DEFAULT true CHECK (id),
  last_revision     bigint NOT NULL,
  compact_revision  bigint NOT NULL
);
INSERT INTO kv_revisions (id, last_revision, compact_revision) VALUES (true, 0, 0);

-- One row per change: the entry as of the change (for DELETE and EXPIRE,
-- as it was last). Kept for the watch retention period.
CREATE TABLE kv_changes (
  revision      bigint PRIMARY KEY,
  change_type   smallint NOT NULL CHECK (change_type IN (1, 2, 3)), -- PUT, DELETE, EXPIRE
  key           text COLLATE "C" NOT NULL,
  bytes_value   bytea,
  json_value    jsonb,
  version       bigint NOT NULL,
  session_id    text NOT NULL,
  create_time   timestamptz NOT NULL,
  update_time   timestamptz NOT NULL,
  expire_time   timestamptz,
  change_time   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kv_changes_change_time_idx ON kv_changes (change_time);
