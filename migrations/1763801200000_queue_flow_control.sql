-- Up Migration
-- Queue flow control: per-queue limits (RUNNING jobs of the queue and of
-- each group_key), rate limits, fair leasing. Running counts are not kept
-- in counters: a lease counts RUNNING rows under its queue's config row
-- lock (src/jobs/queue-config.ts explains why that is exact), with the
-- indexes below. A queue without a controlled config leases as before.

-- Jobs without a group form one group, the empty key.
ALTER TABLE jobs ADD COLUMN group_key text NOT NULL DEFAULT '';

-- Per-group picks (fair, per-group limits): a group's waiting jobs by
-- priority, and the distinct groups with waiting work (a skip scan).
CREATE INDEX jobs_group_waiting_idx ON jobs (namespace, queue, group_key, priority DESC, run_time, job_id)
  WHERE state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING');
-- RUNNING jobs of a queue, and of one group of it, counted under the lock.
CREATE INDEX jobs_group_running_idx ON jobs (namespace, queue, group_key) WHERE state = 'RUNNING';

CREATE TABLE queue_configs (
  namespace              text NOT NULL,
  queue                  text NOT NULL,
  max_running            integer NOT NULL DEFAULT 0 CHECK (max_running >= 0),
  max_running_per_group  integer NOT NULL DEFAULT 0 CHECK (max_running_per_group >= 0),
  rate_count             integer NOT NULL DEFAULT 0 CHECK (rate_count >= 0),
  rate_period_ms         bigint NOT NULL DEFAULT 0 CHECK (rate_period_ms >= 0),
  rate_scope             text NOT NULL DEFAULT 'QUEUE' CHECK (rate_scope IN ('QUEUE', 'GROUP')),
  fair                   boolean NOT NULL DEFAULT false,
  version                bigint NOT NULL DEFAULT 1,
  update_time            timestamptz NOT NULL DEFAULT now(),
  -- Whether leases of the queue take the flow-controlled path at all.
  controlled             boolean GENERATED ALWAYS AS (max_running > 0 OR max_running_per_group > 0 OR rate_count > 0 OR fair) STORED,
  CHECK (rate_count = 0 OR rate_period_ms > 0),
  PRIMARY KEY (namespace, queue)
);

-- Where fair leasing of a queue goes on: after the group it served last
-- (NULL: from the first). A row of its own, made with the config, so that
-- leases holding the config row FOR SHARE can move it (or leave it to
-- another lease moving it at the same time).
CREATE TABLE queue_fair_cursors (
  namespace  text NOT NULL,
  queue      text NOT NULL,
  group_key  text,
  PRIMARY KEY (namespace, queue)
);

-- Rate limits as a log of spent tokens: `spent` leases at `spend_time`
-- (one row per lease transaction and bucket). A lease may spend what the
-- window (spend_time > now - period) leaves of the count. Scope QUEUE
-- spends under group_key ''.
CREATE TABLE queue_rate_spends (
  namespace   text NOT NULL,
  queue       text NOT NULL,
  scope       text NOT NULL CHECK (scope IN ('QUEUE', 'GROUP')),
  group_key   text NOT NULL,
  spend_time  timestamptz NOT NULL,
  spent       integer NOT NULL,
  PRIMARY KEY (namespace, queue, scope, group_key, spend_time)
);
-- Pruning a queue's spends that left the window.
CREATE INDEX queue_rate_spends_time_idx ON queue_rate_spends (namespace, queue, spend_time);
