-- Up Migration
-- Indexes for filters clients can send that no index served (found with
-- bench/explain-filters.ts over 300k rows per table).
--
-- ListSessions' and CountSessions' state_contains (state @> ...), as
-- metadata_contains and labels already are: without it every such filter
-- read the whole table. jsonb_path_ops: containment is the only operator the
-- filters use, and it makes a smaller, faster index than jsonb_ops.
CREATE INDEX sessions_state_idx ON sessions USING gin (state jsonb_path_ops);

-- ListJobs without a queue pages by (create_time, job_id); jobs_list_idx
-- leads with queue, so every such page read and sorted the whole table.
CREATE INDEX jobs_create_time_idx ON jobs (create_time, job_id);
