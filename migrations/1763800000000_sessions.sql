-- Up Migration
-- Sessions, their message history, and the request_id idempotency record
-- shared by every create method.

CREATE TABLE sessions (
  session_id             text PRIMARY KEY,
  agent_id               text NOT NULL,
  user_id                text NOT NULL DEFAULT '',
  status                 text NOT NULL CHECK (status IN ('ACTIVE', 'ENDED', 'ERROR')),
  labels                 jsonb NOT NULL DEFAULT '{}',
  metadata               jsonb,
  state                  jsonb,
  version                bigint NOT NULL DEFAULT 1,
  create_time            timestamptz NOT NULL DEFAULT now(),
  update_time            timestamptz NOT NULL DEFAULT now(),
  end_time               timestamptz,
  -- The last message sequence handed out; appends lock this row to allocate.
  last_message_sequence  bigint NOT NULL DEFAULT 0
);

-- Keyset pagination for each order_by, and the common filters.
CREATE INDEX sessions_create_time_idx ON sessions (create_time, session_id);
CREATE INDEX sessions_update_time_idx ON sessions (update_time, session_id);
CREATE INDEX sessions_agent_create_time_idx ON sessions (agent_id, create_time, session_id);
CREATE INDEX sessions_user_create_time_idx ON sessions (user_id, create_time, session_id) WHERE user_id <> '';
CREATE INDEX sessions_active_create_time_idx ON sessions (create_time) WHERE status = 'ACTIVE';
CREATE INDEX sessions_labels_idx ON sessions USING gin (labels jsonb_path_ops);
CREATE INDEX sessions_metadata_idx ON sessions USING gin (metadata jsonb_path_ops);

CREATE TABLE session_messages (
  session_id   text NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
  sequence     bigint NOT NULL,
  role         text NOT NULL,
  content      text NOT NULL DEFAULT '',
  metadata     jsonb,
  create_time  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, sequence)
);

-- AIP-155 request ids: a retried create returns the first result for 24 h.
CREATE TABLE request_ids (
  scope         text NOT NULL,
  request_id    text NOT NULL,
  request_hash  text NOT NULL,
  resource_id   text NOT NULL,
  create_time   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (scope, request_id)
);
CREATE INDEX request_ids_create_time_idx ON request_ids (create_time);
