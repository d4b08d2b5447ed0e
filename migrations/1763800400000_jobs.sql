-- Up Migration
-- A durable job queue: leases fenced by a fresh token, retries with
-- backoff, dead letters, and dedupe keys enforced by a partial unique index.

CREATE TABLE job_queues (
  queue   text PRIMARY KEY,
  paused  boolean NOT NULL DEFAULT false
);

CREATE TABLE jobs (
  job_id              text PRIMARY KEY,
  queue               text NOT NULL,
  payload             jsonb NOT NULL DEFAULT '{}',
  state               text NOT NULL CHECK (state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING', 'SUCCEEDED', 'DEAD', 'CANCELLED')),
  priority            integer NOT NULL DEFAULT 0,
  run_time            timestamptz NOT NULL,
  attempt             integer NOT NULL DEFAULT 0,
  max_attempts        integer NOT NULL,
  backoff_initial_ms  bigint NOT NULL,
  backoff_max_ms      bigint NOT NULL,
  backoff_multiplier  double precision NOT NULL,
  dedupe_key          text,
  session_id          text NOT NULL DEFAULT '',
  worker_id           text NOT NULL DEFAULT '',
  lease_token         uuid,
  lease_expire_time   timestamptz,
  last_error          jsonb,
  result              jsonb,
  create_time         timestamptz NOT NULL DEFAULT now(),
  update_time         timestamptz NOT NULL DEFAULT now(),
  finish_time         timestamptz
);

-- While a job is unfinished, no other job of its queue may carry its dedupe key.
CREATE UNIQUE INDEX jobs_dedupe_idx ON jobs (queue, dedupe_key)
  WHERE dedupe_key IS NOT NULL AND state IN ('SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING');
-- What LeaseJobs scans: waiting jobs by priority desc, run_time asc.
CREATE INDEX jobs_waiting_idx ON jobs (queue, priority DESC, run_time, job_id)
  WHERE state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING');
CREATE INDEX jobs_running_idx ON jobs (lease_expire_time) WHERE state = 'RUNNING';
CREATE INDEX jobs_finished_idx ON jobs (finish_time) WHERE finish_time IS NOT NULL;
CREATE INDEX jobs_list_idx ON jobs (queue, create_time, job_id);
CREATE INDEX jobs_session_idx ON jobs (session_id) WHERE session_id <> '';
