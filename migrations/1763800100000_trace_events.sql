-- Up Migration
-- Trace events: an append-only, hash-chained log with per-trace sequences
-- and one global offset, the subscription cursor.

-- The head of each trace's chain. Appends lock this row, so two writers to
-- one trace are serialized while writers to other traces are not.
CREATE TABLE trace_heads (
  trace_id       text PRIMARY KEY,
  last_sequence  bigint NOT NULL DEFAULT 0,
  last_hash      text NOT NULL DEFAULT ''
);

-- The last offset handed out. Offsets are allocated from this row in the
-- statement that inserts the events, and its row lock is held until commit,
-- so offsets become visible strictly in offset order: a tailer reading
-- "offset >= cursor" can never skip an event that commits late.
CREATE TABLE trace_offsets (
  id           boolean PRIMARY KEY DEFAULT true CHECK (id),
  last_offset  bigint NOT NULL
);
INSERT INTO trace_offsets (id, last_offset) VALUES (true, 0);

CREATE TABLE trace_events (
  event_offset  bigint PRIMARY KEY,
  trace_id      text NOT NULL,
  sequence      bigint NOT NULL,
  event_id      text NOT NULL,
  session_id    text NOT NULL DEFAULT '',
  event_type    text NOT NULL,
  severity      smallint NOT NULL,
  event_time    timestamptz NOT NULL,
  payload       jsonb NOT NULL DEFAULT '{}',
  ingest_time   timestamptz NOT NULL,
  prev_hash     text NOT NULL,
  event_hash    text NOT NULL,
  UNIQUE (trace_id, sequence),
  UNIQUE (trace_id, event_id)
);
CREATE INDEX trace_events_session_idx ON trace_events (session_id, event_offset) WHERE session_id <> '';
