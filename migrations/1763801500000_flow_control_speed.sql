-- Up Migration
-- Flow control, cheaper: a controlled lease is one call of cairn_flow_lease
-- (one round trip, no BEGIN/COMMIT of its own) instead of a transaction of
-- three to five statements, and it holds its queue with an advisory lock
-- instead of a row lock on the queue's config (no MultiXact, no write of
-- the config row by every lease). src/jobs/flow-lease.ts has the argument
-- why the limits hold; the steps below are numbered as there.
--
-- The function is PL/pgSQL because each of its statements takes a fresh
-- snapshot (a VOLATILE function does, under READ COMMITTED): a count made
-- after a lock was granted sees everything its earlier holders committed,
-- which one SQL statement (one snapshot, taken before its locks) cannot do.

-- The queue's lease lock: shared by leases that count nothing queue-wide,
-- exclusive for those that do and for a change of the queue's config. The
-- first key names Cairn's queue locks ('CAIQ'); group locks use 'CAIU'.
CREATE FUNCTION cairn_flow_lock_queue(p_ns text, p_queue text, p_exclusive boolean) RETURNS void
  LANGUAGE plpgsql
AS $$
BEGIN
  IF p_exclusive THEN
    PERFORM pg_advisory_xact_lock(1128352081, hashtext(p_ns || ':' || p_queue));
  ELSE
    PERFORM pg_advisory_xact_lock_shared(1128352081, hashtext(p_ns || ':' || p_queue));
  END IF;
END $$;

-- Up to p_max leases of a controlled queue. Rows: the leases in serving
-- order (outcome 'leased'), then one row with no job: outcome 'done' and
-- when to look again though nothing is announced (retry_ms: a rate-limit
-- token comes back, or groups with room were held by other leases; NULL:
-- only when told), or 'uncontrolled' (lease by the one-statement path), or
-- 'again' (the config began to count queue-wide under a shared hold: call
-- again, which then holds it exclusive). capped: the config limits RUNNING
-- jobs, so a finish may make room (a fair queue's finish makes none).
CREATE FUNCTION cairn_flow_lease(p_ns text, p_queue text, p_worker text, p_max integer, p_lease_ms bigint)
  RETURNS TABLE (leased_job jobs, outcome text, retry_ms integer, capped boolean)
  LANGUAGE plpgsql
AS $$
DECLARE
  v_cfg queue_configs;
  v_exclusive boolean;
  v_group_limits boolean;
  v_period interval;
  v_room integer := p_max;
  v_cursor text;
  v_held text[];
  v_skipped integer := 0;
  v_groups text[] := '{}';
  v_rooms integer[] := '{}';
  v_t timestamptz;
  v_jobs jobs[] := '{}';
  v_retry integer;
BEGIN
  -- Step 1: the queue's lock, in the mode the config asks for; the config
  -- is then read again, under the lock, and that is what the lease obeys.
  SELECT * INTO v_cfg FROM queue_configs WHERE namespace = p_ns AND queue = p_queue;
  IF NOT FOUND OR NOT v_cfg.controlled THEN
    RETURN QUERY SELECT NULL::jobs, 'uncontrolled'::text, NULL::integer, false;
    RETURN;
  END IF;
  v_exclusive := v_cfg.max_running > 0 OR (v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'QUEUE');
  PERFORM cairn_flow_lock_queue(p_ns, p_queue, v_exclusive);
  SELECT * INTO v_cfg FROM queue_configs WHERE namespace = p_ns AND queue = p_queue;
  IF NOT FOUND OR NOT v_cfg.controlled THEN
    RETURN QUERY SELECT NULL::jobs, 'uncontrolled'::text, NULL::integer, false;
    RETURN;
  END IF;
  IF NOT v_exclusive AND (v_cfg.max_running > 0 OR (v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'QUEUE')) THEN
    RETURN QUERY SELECT NULL::jobs, 'again'::text, NULL::integer, false;
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM job_queues WHERE namespace = p_ns AND queue = p_queue AND paused) THEN
    RETURN QUERY SELECT NULL::jobs, 'done'::text, NULL::integer, v_cfg.max_running > 0 OR v_cfg.max_running_per_group > 0;
    RETURN;
  END IF;
  v_group_limits := v_cfg.max_running_per_group > 0 OR (v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'GROUP');
  v_period := v_cfg.rate_period_ms * interval '1 millisecond';
  IF v_cfg.fair THEN
    -- Never served: the rotation starts after '' (every group but the
    -- ungrouped one, then that one), as good a start as any.
    SELECT coalesce(max(group_key), '') INTO v_cursor FROM queue_fair_cursors WHERE namespace = p_ns AND queue = p_queue;
  END IF;

  IF NOT v_exclusive AND v_group_limits THEN
    -- Step 2: lock groups in serving order (fair: the rotation after the
    -- cursor; else by each group's best job), skipping those another lease
    -- holds and those without room as this statement's snapshot (taken
    -- before the locks) sees it, until the rooms cover the batch.
    IF v_cfg.fair THEN
      WITH RECURSIVE walk (i, part, group_key, got, room, locked) AS (
        SELECT 0, 0, v_cursor, 0, 0, NULL::boolean
        UNION ALL
        SELECT w.i + 1, nx.part, nx.group_key, w.got + CASE WHEN lk.locked THEN r.room ELSE 0 END, r.room, lk.locked
          FROM walk w
          CROSS JOIN LATERAL (
            SELECT CASE WHEN w.part = 0 THEN
                     (SELECT j.group_key FROM jobs j
                       WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')
                         AND j.group_key > w.group_key AND j.run_time <= now()
                       ORDER BY j.group_key LIMIT 1) END AS k) a
          CROSS JOIN LATERAL (
            SELECT CASE WHEN a.k IS NOT NULL THEN 0 ELSE 1 END AS part,
                   coalesce(a.k, CASE WHEN w.part = 0
                     THEN (SELECT j.group_key FROM jobs j
                            WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')
                              AND j.group_key <= v_cursor AND j.run_time <= now()
                            ORDER BY j.group_key LIMIT 1)
                     ELSE (SELECT j.group_key FROM jobs j
                            WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')
                              AND j.group_key > w.group_key AND j.group_key <= v_cursor AND j.run_time <= now()
                            ORDER BY j.group_key LIMIT 1) END) AS group_key) nx
          CROSS JOIN LATERAL (
            SELECT least(v_room,
                     CASE WHEN v_cfg.max_running_per_group > 0
                          THEN v_cfg.max_running_per_group - (SELECT count(*)::int FROM jobs c
                                 WHERE c.namespace = p_ns AND c.queue = p_queue AND c.group_key = nx.group_key AND c.state = 'RUNNING') END,
                     CASE WHEN v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'GROUP'
                          THEN v_cfg.rate_count - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s
                                 WHERE s.namespace = p_ns AND s.queue = p_queue AND s.scope = 'GROUP' AND s.group_key = nx.group_key
                                   AND s.spend_time > clock_timestamp() - v_period) END) AS room
            OFFSET 0) r
          CROSS JOIN LATERAL (
            SELECT CASE WHEN r.room > 0 THEN pg_try_advisory_xact_lock(1128352085, hashtext(p_ns || ':' || p_queue || ':' || nx.group_key))
                        ELSE false END AS locked
            OFFSET 0) lk
         WHERE nx.group_key IS NOT NULL AND w.got < v_room
      )
      SELECT coalesce(array_agg(group_key ORDER BY i) FILTER (WHERE locked), '{}'), count(*) FILTER (WHERE NOT locked AND room > 0)
        INTO v_held, v_skipped
        FROM walk WHERE i > 0;
    ELSE
      WITH RECURSIVE best (group_key, priority, run_time, job_id) AS (
        (SELECT j.group_key, j.priority, j.run_time, j.job_id FROM jobs j
          WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND j.run_time <= now()
          ORDER BY j.group_key, j.priority DESC, j.run_time, j.job_id LIMIT 1)
        UNION ALL
        SELECT n.* FROM best b CROSS JOIN LATERAL (
          SELECT j.group_key, j.priority, j.run_time, j.job_id FROM jobs j
           WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND j.run_time <= now()
             AND j.group_key > b.group_key
           ORDER BY j.group_key, j.priority DESC, j.run_time, j.job_id LIMIT 1) n
      ),
      ordered AS MATERIALIZED (SELECT coalesce(array_agg(group_key ORDER BY priority DESC, run_time, job_id), '{}') AS keys FROM best),
      walk (i, got, group_key, room, locked) AS (
        SELECT 0, 0, NULL::text, 0, NULL::boolean
        UNION ALL
        SELECT w.i + 1, w.got + CASE WHEN lk.locked THEN r.room ELSE 0 END, o.keys[w.i + 1], r.room, lk.locked
          FROM walk w
          CROSS JOIN ordered o
          CROSS JOIN LATERAL (
            SELECT least(v_room,
                     CASE WHEN v_cfg.max_running_per_group > 0
                          THEN v_cfg.max_running_per_group - (SELECT count(*)::int FROM jobs c
                                 WHERE c.namespace = p_ns AND c.queue = p_queue AND c.group_key = o.keys[w.i + 1] AND c.state = 'RUNNING') END,
                     CASE WHEN v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'GROUP'
                          THEN v_cfg.rate_count - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s
                                 WHERE s.namespace = p_ns AND s.queue = p_queue AND s.scope = 'GROUP' AND s.group_key = o.keys[w.i + 1]
                                   AND s.spend_time > clock_timestamp() - v_period) END) AS room
            OFFSET 0) r
          CROSS JOIN LATERAL (
            SELECT CASE WHEN r.room > 0 THEN pg_try_advisory_xact_lock(1128352085, hashtext(p_ns || ':' || p_queue || ':' || o.keys[w.i + 1]))
                        ELSE false END AS locked
            OFFSET 0) lk
         WHERE w.i < cardinality(o.keys) AND w.got < v_room
      )
      SELECT coalesce(array_agg(group_key ORDER BY i) FILTER (WHERE locked), '{}'), count(*) FILTER (WHERE NOT locked AND room > 0)
        INTO v_held, v_skipped
        FROM walk WHERE i > 0;
    END IF;

    -- Step 3, in a statement that starts after the locks: the exact room
    -- of each group held (RUNNING jobs, tokens spent in the window).
    SELECT coalesce(array_agg(h.group_key ORDER BY h.i), '{}'), coalesce(array_agg(r.room ORDER BY h.i), '{}')
      INTO v_groups, v_rooms
      FROM unnest(v_held) WITH ORDINALITY AS h (group_key, i)
      CROSS JOIN LATERAL (
        SELECT least(v_room,
                 CASE WHEN v_cfg.max_running_per_group > 0
                      THEN v_cfg.max_running_per_group - (SELECT count(*)::int FROM jobs c
                             WHERE c.namespace = p_ns AND c.queue = p_queue AND c.group_key = h.group_key AND c.state = 'RUNNING') END,
                 CASE WHEN v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'GROUP'
                      THEN v_cfg.rate_count - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s
                             WHERE s.namespace = p_ns AND s.queue = p_queue AND s.scope = 'GROUP' AND s.group_key = h.group_key
                               AND s.spend_time > clock_timestamp() - v_period) END) AS room
        OFFSET 0) r
     WHERE r.room > 0;
  ELSE
    -- Step 3 under the queue's lock alone: exclusive (every lease of the
    -- queue takes its turn, so every count is exact), or shared for a queue
    -- that is only fair (nothing to count).
    SELECT least(p_max,
             CASE WHEN v_cfg.max_running > 0
                  THEN v_cfg.max_running - (SELECT count(*)::int FROM jobs r
                         WHERE r.namespace = p_ns AND r.queue = p_queue AND r.state = 'RUNNING') END,
             CASE WHEN v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'QUEUE'
                  THEN v_cfg.rate_count - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s
                         WHERE s.namespace = p_ns AND s.queue = p_queue AND s.scope = 'QUEUE' AND s.group_key = ''
                           AND s.spend_time > clock_timestamp() - v_period) END)
      INTO v_room;
    IF v_room > 0 AND v_cfg.fair THEN
      -- The first groups of the rotation with room, as many as the batch.
      WITH RECURSIVE rotation (i, part, group_key) AS (
        SELECT 0, 0, v_cursor
        UNION ALL
        SELECT w.i + 1, nx.part, nx.group_key
          FROM rotation w
          CROSS JOIN LATERAL (
            SELECT CASE WHEN w.part = 0 THEN
                     (SELECT j.group_key FROM jobs j
                       WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')
                         AND j.group_key > w.group_key AND j.run_time <= now()
                       ORDER BY j.group_key LIMIT 1) END AS k) a
          CROSS JOIN LATERAL (
            SELECT CASE WHEN a.k IS NOT NULL THEN 0 ELSE 1 END AS part,
                   coalesce(a.k, CASE WHEN w.part = 0
                     THEN (SELECT j.group_key FROM jobs j
                            WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')
                              AND j.group_key <= v_cursor AND j.run_time <= now()
                            ORDER BY j.group_key LIMIT 1)
                     ELSE (SELECT j.group_key FROM jobs j
                            WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING')
                              AND j.group_key > w.group_key AND j.group_key <= v_cursor AND j.run_time <= now()
                            ORDER BY j.group_key LIMIT 1) END) AS group_key) nx
         WHERE nx.group_key IS NOT NULL
      )
      SELECT coalesce(array_agg(group_key ORDER BY i), '{}'), coalesce(array_agg(room ORDER BY i), '{}')
        INTO v_groups, v_rooms
        FROM (
          SELECT g.i, g.group_key, r.room FROM rotation g
           CROSS JOIN LATERAL (
             SELECT least(v_room,
                      CASE WHEN v_cfg.max_running_per_group > 0
                           THEN v_cfg.max_running_per_group - (SELECT count(*)::int FROM jobs c
                                  WHERE c.namespace = p_ns AND c.queue = p_queue AND c.group_key = g.group_key AND c.state = 'RUNNING') END,
                      CASE WHEN v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'GROUP'
                           THEN v_cfg.rate_count - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s
                                  WHERE s.namespace = p_ns AND s.queue = p_queue AND s.scope = 'GROUP' AND s.group_key = g.group_key
                                    AND s.spend_time > clock_timestamp() - v_period) END) AS room
             OFFSET 0) r
           WHERE g.i > 0 AND r.room > 0
           LIMIT v_room) eligible;
    ELSIF v_room > 0 AND v_group_limits THEN
      -- Every group with waiting work and room, by its best job.
      WITH RECURSIVE best (group_key, priority, run_time, job_id) AS (
        (SELECT j.group_key, j.priority, j.run_time, j.job_id FROM jobs j
          WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND j.run_time <= now()
          ORDER BY j.group_key, j.priority DESC, j.run_time, j.job_id LIMIT 1)
        UNION ALL
        SELECT n.* FROM best b CROSS JOIN LATERAL (
          SELECT j.group_key, j.priority, j.run_time, j.job_id FROM jobs j
           WHERE j.namespace = p_ns AND j.queue = p_queue AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND j.run_time <= now()
             AND j.group_key > b.group_key
           ORDER BY j.group_key, j.priority DESC, j.run_time, j.job_id LIMIT 1) n
      )
      SELECT coalesce(array_agg(b.group_key ORDER BY b.priority DESC, b.run_time, b.job_id), '{}'),
             coalesce(array_agg(r.room ORDER BY b.priority DESC, b.run_time, b.job_id), '{}')
        INTO v_groups, v_rooms
        FROM best b
        CROSS JOIN LATERAL (
          SELECT least(v_room,
                   CASE WHEN v_cfg.max_running_per_group > 0
                        THEN v_cfg.max_running_per_group - (SELECT count(*)::int FROM jobs c
                               WHERE c.namespace = p_ns AND c.queue = p_queue AND c.group_key = b.group_key AND c.state = 'RUNNING') END,
                   CASE WHEN v_cfg.rate_count > 0 AND v_cfg.rate_scope = 'GROUP'
                        THEN v_cfg.rate_count - (SELECT coalesce(sum(s.spent), 0)::int FROM queue_rate_spends s
                               WHERE s.namespace = p_ns AND s.queue = p_queue AND s.scope = 'GROUP' AND s.group_key = b.group_key
                                 AND s.spend_time > clock_timestamp() - v_period) END) AS room
          OFFSET 0) r
       WHERE r.room > 0;
    ELSIF v_room > 0 THEN
      -- Queue-wide limits alone: the one-statement lease's pick, up to the room.
      WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
      picked AS (
        SELECT job_id FROM jobs
         WHERE namespace = p_ns AND queue = p_queue AND state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND run_time <= now()
         ORDER BY priority DESC, run_time, job_id
         LIMIT v_room
         FOR UPDATE SKIP LOCKED
      ),
      taken AS (
        UPDATE jobs j SET state = 'RUNNING', attempt = j.attempt + 1, worker_id = p_worker, lease_token = gen_random_uuid(),
               lease_expire_time = clock.t + p_lease_ms * interval '1 millisecond', update_time = clock.t
          FROM picked p, clock WHERE j.namespace = p_ns AND j.job_id = p.job_id
        RETURNING j
      )
      SELECT coalesce(array_agg(t.j ORDER BY (t.j).priority DESC, (t.j).run_time, (t.j).job_id), '{}'), (SELECT clock.t FROM clock)
        INTO v_jobs, v_t FROM taken t;
    END IF;
  END IF;

  IF cardinality(v_groups) > 0 AND v_cfg.fair THEN
    -- Fair pick: each group offers up to an equal share of the room (its
    -- jobs locked as found, SKIP LOCKED: leases side by side take different
    -- ones); the batch takes every group's first, then every second, ...
    WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
    eligible AS (
      SELECT u.group_key, u.room, u.i FROM unnest(v_groups, v_rooms) WITH ORDINALITY AS u (group_key, room, i)
    ),
    share AS MATERIALIZED (SELECT ceil(v_room::numeric / count(*))::int AS n FROM eligible),
    candidates AS (
      SELECT c.job_id, e.i, row_number() OVER (PARTITION BY e.i ORDER BY c.priority DESC, c.run_time, c.job_id) AS rn
        FROM eligible e CROSS JOIN LATERAL (
          SELECT j.job_id, j.priority, j.run_time FROM jobs j
           WHERE j.namespace = p_ns AND j.queue = p_queue AND j.group_key = e.group_key
             AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND j.run_time <= now()
           ORDER BY j.priority DESC, j.run_time, j.job_id
           LIMIT least(e.room, (SELECT n FROM share))
           FOR UPDATE OF j SKIP LOCKED) c
    ),
    chosen AS MATERIALIZED (
      SELECT job_id, ord FROM (SELECT job_id, row_number() OVER (ORDER BY rn, i) AS ord FROM candidates) ranked WHERE ord <= v_room
    ),
    taken AS (
      UPDATE jobs j SET state = 'RUNNING', attempt = j.attempt + 1, worker_id = p_worker, lease_token = gen_random_uuid(),
             lease_expire_time = clock.t + p_lease_ms * interval '1 millisecond', update_time = clock.t
        FROM clock WHERE j.namespace = p_ns AND j.job_id = ANY (ARRAY(SELECT job_id FROM chosen))
      RETURNING j
    )
    SELECT coalesce(array_agg(t.j ORDER BY c.ord), '{}'), (SELECT clock.t FROM clock)
      INTO v_jobs, v_t FROM taken t JOIN chosen c ON c.job_id = (t.j).job_id;
  ELSIF cardinality(v_groups) > 0 THEN
    -- Priority pick: each group offers its best up to its room, the batch
    -- takes the best of them, and only those are locked.
    WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS t),
    eligible AS (
      SELECT u.group_key, u.room FROM unnest(v_groups, v_rooms) AS u (group_key, room)
    ),
    candidates AS (
      SELECT c.* FROM eligible e CROSS JOIN LATERAL (
        SELECT j.job_id, j.priority, j.run_time FROM jobs j
         WHERE j.namespace = p_ns AND j.queue = p_queue AND j.group_key = e.group_key
           AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND j.run_time <= now()
         ORDER BY j.priority DESC, j.run_time, j.job_id
         LIMIT e.room) c
    ),
    chosen AS (
      SELECT j.job_id FROM jobs j
       WHERE j.namespace = p_ns AND j.job_id = ANY (ARRAY(SELECT job_id FROM candidates ORDER BY priority DESC, run_time, job_id LIMIT v_room))
         AND j.state IN ('SCHEDULED', 'AVAILABLE', 'RETRYING') AND j.run_time <= now()
       FOR UPDATE SKIP LOCKED
    ),
    taken AS (
      UPDATE jobs j SET state = 'RUNNING', attempt = j.attempt + 1, worker_id = p_worker, lease_token = gen_random_uuid(),
             lease_expire_time = clock.t + p_lease_ms * interval '1 millisecond', update_time = clock.t
        FROM clock WHERE j.namespace = p_ns AND j.job_id = ANY (ARRAY(SELECT job_id FROM chosen))
      RETURNING j
    )
    SELECT coalesce(array_agg(t.j ORDER BY (t.j).priority DESC, (t.j).run_time, (t.j).job_id), '{}'), (SELECT clock.t FROM clock)
      INTO v_jobs, v_t FROM taken t;
  END IF;

  IF v_cfg.rate_count > 0 AND v_t IS NOT NULL THEN
    -- Tokens spent at the lease's time, read under the locks that cover
    -- their buckets and after the counts; spends that left the window are
    -- dropped from those buckets only.
    INSERT INTO queue_rate_spends AS s (namespace, queue, scope, group_key, spend_time, spent)
    SELECT p_ns, p_queue, v_cfg.rate_scope, CASE WHEN v_cfg.rate_scope = 'GROUP' THEN x.group_key ELSE '' END, v_t, count(*)
      FROM unnest(v_jobs) x GROUP BY 4
    ON CONFLICT (namespace, queue, scope, group_key, spend_time) DO UPDATE SET spent = s.spent + EXCLUDED.spent;
    DELETE FROM queue_rate_spends s
     WHERE s.namespace = p_ns AND s.queue = p_queue AND s.spend_time <= v_t - v_period
       AND (v_exclusive OR (s.scope = 'GROUP' AND s.group_key = ANY (v_held)));
  END IF;
  IF v_cfg.fair AND cardinality(v_jobs) > 0 THEN
    -- The cursor moves to the last group served, unless another lease is moving it just then.
    UPDATE queue_fair_cursors f SET group_key = (v_jobs[cardinality(v_jobs)]).group_key
      FROM (SELECT namespace, queue FROM queue_fair_cursors WHERE namespace = p_ns AND queue = p_queue FOR UPDATE SKIP LOCKED) free
     WHERE f.namespace = free.namespace AND f.queue = free.queue;
  END IF;

  IF cardinality(v_jobs) < p_max THEN
    IF v_cfg.rate_count > 0 THEN
      SELECT greatest(1, coalesce(ceil(extract(epoch FROM min(spend_time) + v_period - clock_timestamp()) * 1000)::int, v_cfg.rate_period_ms::int))
        INTO v_retry
        FROM queue_rate_spends WHERE namespace = p_ns AND queue = p_queue AND spend_time > clock_timestamp() - v_period;
    END IF;
    -- Groups with room were held by other leases, for a statement or two.
    IF v_skipped > 0 THEN
      v_retry := least(coalesce(v_retry, 10), 10);
    END IF;
  END IF;
  RETURN QUERY SELECT x, 'leased'::text, NULL::integer, NULL::boolean FROM unnest(v_jobs) x;
  RETURN QUERY SELECT NULL::jobs, 'done'::text, v_retry, v_cfg.max_running > 0 OR v_cfg.max_running_per_group > 0;
END $$;
