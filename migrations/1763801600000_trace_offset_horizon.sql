-- Up Migration
-- Trace event offsets without a lock held to commit. Before, every append
-- drew its offsets from the one trace_offsets row and held its row lock
-- until commit, so offsets became visible in offset order, but appends to
-- unrelated traces committed one at a time (each waiting for the previous
-- one's WAL flush). Now offsets come from a sequence, appends commit in
-- parallel, and a reader passes only offsets that are settled: no running
-- transaction can still commit an event at or below them.
--
-- How a reader knows an offset is settled. Every appending transaction
-- holds one of 64 "offset slots" (a transaction-level advisory lock) from
-- before it draws its first offset until it ends. cairn_settled_trace_offset
-- reads the sequence's last value L, then waits on every slot in turn. Any
-- transaction that drew an offset <= L held its slot before L was read, so
-- the wait outlasts it: once the function returns, every event at or below
-- L is committed (and visible to any later snapshot) or never will be. The
-- wait is for Cairn's own appending transactions only, never for unrelated
-- ones (as a horizon from pg_snapshot_xmin would be): an idle transaction
-- elsewhere on the server cannot stall subscribers.
--
-- The sequence must not cache values (CACHE 1): a value cached by a session
-- before L was read could be drawn after the reader passed its slot.

CREATE SEQUENCE trace_event_offsets AS bigint MINVALUE 0 CACHE 1;
SELECT setval('trace_event_offsets', (SELECT last_offset FROM trace_offsets), true);
DROP TABLE trace_offsets;

-- Taken by an appending transaction before it draws offsets: a free slot
-- if there is one (try-locks never wait), else a wait for the slot its
-- backend maps to (only when all 64 are busy). Re-entrant: a second append
-- in the same transaction finds its own slot.
-- Class 1128353606 is "CAOF", apart from Cairn's other advisory lock
-- classes.
CREATE FUNCTION cairn_hold_offset_slot() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  FOR i IN 0..63 LOOP
    IF pg_try_advisory_xact_lock(1128353606, (pg_backend_pid() + i) % 64) THEN
      RETURN;
    END IF;
  END LOOP;
  PERFORM pg_advisory_xact_lock(1128353606, pg_backend_pid() % 64);
END $$;

-- An append's offsets: the slot first, then `n` values from the sequence,
-- ascending (statements of a function run in order, so no plan can draw
-- before the slot is held).
CREATE FUNCTION cairn_draw_trace_offsets(n int) RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM cairn_hold_offset_slot();
  RETURN QUERY SELECT nextval('trace_event_offsets') FROM generate_series(1, n);
END $$;

-- The highest settled offset (see above). Run it as a statement of its own,
-- outside any explicit transaction, before the read it bounds: that read's
-- snapshot, taken afterwards, sees every event at or below the returned
-- offset that will ever exist. Each slot is taken shared and let go at once
-- (a session-level lock), so the reader holds at most one slot at a time
-- and appenders use the others meanwhile; if the wait is cancelled, the
-- handler lets go of a slot the cancellation left held, since a session
-- lock outlives the statement.
CREATE FUNCTION cairn_settled_trace_offset() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  settled bigint;
  current_slot int := -1;
BEGIN
  SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO settled FROM trace_event_offsets;
  BEGIN
    FOR slot IN 0..63 LOOP
      current_slot := slot;
      PERFORM pg_advisory_lock_shared(1128353606, slot);
      PERFORM pg_advisory_unlock_shared(1128353606, slot);
    END LOOP;
  EXCEPTION WHEN query_canceled OR OTHERS THEN
    PERFORM pg_advisory_unlock_shared(1128353606, current_slot)
       FROM pg_locks
      WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid = 1128353606
        AND objid = current_slot AND objsubid = 2 AND mode = 'ShareLock' AND granted;
    RAISE;
  END;
  RETURN settled;
END $$;
