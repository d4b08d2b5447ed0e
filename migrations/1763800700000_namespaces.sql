-- Up Migration
-- Namespaces: every resource lives in one, and `namespace` leads every
-- primary key, unique index and read index, so ids are unique per namespace,
-- a tenant's rows stay together, and a query that forgot its namespace finds
-- nothing rather than another tenant's rows. Existing rows move into
-- 'default'. Offsets and revisions stay one global order (their counters and
-- the event_offset / revision keys are unchanged).
--
-- Left global on purpose: the GIN containment indexes (a leading btree
-- column needs the btree_gin extension; the namespace is filtered after the
-- bitmap) and the maintenance indexes the reaper and lease rescue scan
-- across namespaces (expire_time, finish_time, lease_expire_time,
-- change_time, request_ids.create_time).

ALTER TABLE sessions ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE session_messages ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE request_ids ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE trace_heads ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE trace_events ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE resolutions ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE kv_entries ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE kv_changes ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE job_queues ADD COLUMN namespace text NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN namespace text NOT NULL DEFAULT 'default';

-- Sessions and their messages.
ALTER TABLE session_messages DROP CONSTRAINT session_messages_session_id_fkey;
ALTER TABLE session_messages DROP CONSTRAINT session_messages_pkey;
ALTER TABLE sessions DROP CONSTRAINT sessions_pkey;
ALTER TABLE sessions ADD PRIMARY KEY (namespace, session_id);
ALTER TABLE session_messages ADD PRIMARY KEY (namespace, session_id, sequence);
ALTER TABLE session_messages ADD CONSTRAINT session_messages_session_fkey
  FOREIGN KEY (namespace, session_id) REFERENCES sessions (namespace, session_id) ON DELETE CASCADE;
DROP INDEX sessions_create_time_idx;
DROP INDEX sessions_update_time_idx;
DROP INDEX sessions_agent_create_time_idx;
DROP INDEX sessions_user_create_time_idx;
DROP INDEX sessions_active_create_time_idx;
CREATE INDEX sessions_create_time_idx ON sessions (namespace, create_time, session_id);
CREATE INDEX sessions_update_time_idx ON sessions (namespace, update_time, session_id);
CREATE INDEX sessions_agent_create_time_idx ON sessions (namespace, agent_id, create_time, session_id);
CREATE INDEX sessions_user_create_time_idx ON sessions (namespace, user_id, create_time, session_id) WHERE user_id <> '';
CREATE INDEX sessions_active_create_time_idx ON sessions (namespace, create_time) WHERE status = 'ACTIVE';

-- Request ids are unique per namespace and create method.
ALTER TABLE request_ids DROP CONSTRAINT request_ids_pkey;
ALTER TABLE request_ids ADD PRIMARY KEY (namespace, scope, request_id);

-- Traces: a chain per (namespace, trace_id).
ALTER TABLE trace_heads DROP CONSTRAINT trace_heads_pkey;
ALTER TABLE trace_heads ADD PRIMARY KEY (namespace, trace_id);
ALTER TABLE trace_events DROP CONSTRAINT trace_events_trace_id_sequence_key;
ALTER TABLE trace_events DROP CONSTRAINT trace_events_trace_id_event_id_key;
ALTER TABLE trace_events ADD CONSTRAINT trace_events_trace_sequence_key UNIQUE (namespace, trace_id, sequence);
ALTER TABLE trace_events ADD CONSTRAINT trace_events_trace_event_key UNIQUE (namespace, trace_id, event_id);
DROP INDEX trace_events_session_idx;
CREATE INDEX trace_events_session_idx ON trace_events (namespace, session_id, event_offset) WHERE session_id <> '';

-- Resolutions.
ALTER TABLE resolutions DROP CONSTRAINT resolutions_pkey;
ALTER TABLE resolutions ADD PRIMARY KEY (namespace, resolution_id);
DROP INDEX resolutions_create_time_idx;
DROP INDEX resolutions_session_idx;
DROP INDEX resolutions_agent_idx;
DROP INDEX resolutions_request_idx;
CREATE INDEX resolutions_create_time_idx ON resolutions (namespace, create_time DESC, resolution_id DESC);
CREATE INDEX resolutions_session_idx ON resolutions (namespace, session_id, create_time DESC, resolution_id DESC);
CREATE INDEX resolutions_agent_idx ON resolutions (namespace, agent_id, create_time DESC, resolution_id DESC);
CREATE INDEX resolutions_request_idx ON resolutions (namespace, request_id);

-- Key-value entries (the change log keeps its global revision key).
ALTER TABLE kv_entries DROP CONSTRAINT kv_entries_pkey;
ALTER TABLE kv_entries ADD PRIMARY KEY (namespace, key);
DROP INDEX kv_entries_session_idx;
CREATE INDEX kv_entries_session_idx ON kv_entries (namespace, session_id) WHERE session_id <> '';

-- Jobs and queues.
ALTER TABLE job_queues DROP CONSTRAINT job_queues_pkey;
ALTER TABLE job_queues ADD PRIMARY KEY (namespace, queue);
ALTER TABLE jobs DROP CONSTRAINT jobs_pkey;
ALTER TABLE jobs ADD PRIMARY KEY (namespace, job_id);
DROP INDEX jobs_dedupe_idx;
DROP INDEX jobs_waiting_idx;
DROP INDEX jobs_list_idx;
DROP INDEX jobs_create_time_idx;
DROP INDEX jobs_session_idx;
CREATE UNIQUE INDEX jobs_dedupe_idx ON jobs (namespace, queue, dedupe_key)
  WHERE dedupe_key IS NOT NULL AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING');
CREATE INDEX jobs_waiting_idx ON jobs (namespace, queue, priority DESC, run_time, job_id)
  WHERE state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING');
CREATE INDEX jobs_list_idx ON jobs (namespace, queue, create_time, job_id);
CREATE INDEX jobs_create_time_idx ON jobs (namespace, create_time, job_id);
CREATE INDEX jobs_session_idx ON jobs (namespace, session_id) WHERE session_id <> '';

-- Existing rows are in 'default' now; from here on every write names its
-- namespace, and one that forgets fails loudly instead of landing in 'default'.
ALTER TABLE sessions ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE session_messages ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE request_ids ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE trace_heads ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE trace_events ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE resolutions ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE kv_entries ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE kv_changes ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE job_queues ALTER COLUMN namespace DROP DEFAULT;
ALTER TABLE jobs ALTER COLUMN namespace DROP DEFAULT;
