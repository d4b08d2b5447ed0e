-- Up Migration
-- Job dependencies and heartbeat progress. A job with depends_on is BLOCKED
-- until every parent SUCCEEDED; a parent that goes DEAD or CANCELLED
-- cancels it. jobs.depends_on is the job's own list, as it was enqueued
-- (what readers see, and what "are all my parents done?" reads through the
-- primary key); job_dependencies is the reverse index, so "the children of
-- a parent" is an index lookup when the parent finishes. has_children marks
-- a job that some job depends on: completions of jobs without it skip the
-- dependency work (and its transaction) altogether.

ALTER TABLE jobs
  ADD COLUMN depends_on text[] NOT NULL DEFAULT '{}',
  ADD COLUMN has_children boolean NOT NULL DEFAULT false,
  ADD COLUMN progress jsonb;

ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
  CHECK (state IN ('BLOCKED', 'SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING', 'SUCCEEDED', 'DEAD', 'CANCELLED'));

-- A BLOCKED job is unfinished: it holds its dedupe key like the others.
DROP INDEX jobs_dedupe_idx;
CREATE UNIQUE INDEX jobs_dedupe_idx ON jobs (namespace, queue, dedupe_key)
  WHERE dedupe_key IS NOT NULL AND state IN ('BLOCKED', 'SCHEDULED', 'AVAILABLE', 'RUNNING', 'RETRYING');

-- One row per (child, parent); kept while the child is (retention deletes
-- both together).
CREATE TABLE job_dependencies (
  namespace  text NOT NULL,
  parent_id  text NOT NULL,
  job_id     text NOT NULL,
  PRIMARY KEY (namespace, parent_id, job_id)
);
