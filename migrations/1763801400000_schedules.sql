-- Up Migration
-- Schedules: recurring jobs from a cron expression. The job template is kept
-- in the jobs table's own columns, so a fire copies it as it is.
-- next_fire_time is NULL while paused (or when the cron matches no later
-- time); last_job_id names the job of the latest fire, which OVERLAP_SKIP
-- looks at by primary key.

CREATE TABLE job_schedules (
  namespace           text NOT NULL,
  schedule_id         text NOT NULL,
  queue               text NOT NULL,
  cron                text NOT NULL,
  time_zone           text NOT NULL,
  payload             jsonb NOT NULL DEFAULT '{}',
  priority            integer NOT NULL DEFAULT 0,
  max_attempts        integer NOT NULL,
  backoff_initial_ms  bigint NOT NULL,
  backoff_max_ms      bigint NOT NULL,
  backoff_multiplier  double precision NOT NULL,
  group_key           text NOT NULL DEFAULT '',
  overlap             text NOT NULL CHECK (overlap IN ('ALLOW', 'SKIP')),
  paused              boolean NOT NULL DEFAULT false,
  catch_up_limit      integer NOT NULL CHECK (catch_up_limit >= 1),
  next_fire_time      timestamptz,
  last_fire_time      timestamptz,
  last_job_id         text,
  version             bigint NOT NULL DEFAULT 1,
  create_time         timestamptz NOT NULL DEFAULT now(),
  update_time         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (namespace, schedule_id)
);

-- ListSchedules, with or without a queue, by (create_time, schedule_id).
CREATE INDEX job_schedules_list_idx ON job_schedules (namespace, create_time, schedule_id);
CREATE INDEX job_schedules_queue_idx ON job_schedules (namespace, queue, create_time, schedule_id);
-- What the schedule ticker looks up every round, across namespaces (a
-- maintenance index, like the reaper's): the earliest fire time due.
CREATE INDEX job_schedules_due_idx ON job_schedules (next_fire_time) WHERE next_fire_time IS NOT NULL;
