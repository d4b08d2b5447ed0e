-- Up Migration
-- Session history and forks.
--
-- session_versions keeps the versions a session has left behind: the
-- current version lives in `sessions` only, so a create, an import or a fork
-- writes no history row, and an update writes exactly one (the row it
-- replaces). A trigger records them, so every write path (UpdateSession,
-- state patches, appends with a state patch, batches, upserts, Commit) is
-- covered without remembering to.
--
-- How many versions are kept is the daemon's CAIRN_SESSION_HISTORY_VERSIONS,
-- which each pool connection carries as the setting
-- cairn.session_history_versions. With 0 or 1 (only the current version is
-- kept) the trigger's WHEN is false and an update pays nothing for history.
-- A connection without the setting (psql, a migration) records.
--
-- No foreign key to sessions: its check would cost every update a lookup of
-- the row being updated; deleting a session deletes its versions in the
-- deleting transaction instead (the session cascade, src/sessions/history.ts).

ALTER TABLE sessions ADD COLUMN parent_session_id text;
ALTER TABLE sessions ADD COLUMN parent_version bigint;
-- ListSessions' parent_session_id filter: forks of one session, in order.
CREATE INDEX sessions_parent_create_time_idx ON sessions (namespace, parent_session_id, create_time, session_id)
  WHERE parent_session_id IS NOT NULL;

CREATE TABLE session_versions (
  namespace    text NOT NULL,
  session_id   text NOT NULL,
  version      bigint NOT NULL,
  status       text NOT NULL,
  user_id      text NOT NULL,
  labels       jsonb NOT NULL,
  metadata     jsonb,
  state        jsonb,
  update_time  timestamptz NOT NULL,
  end_time     timestamptz,
  PRIMARY KEY (namespace, session_id, version)
);

CREATE FUNCTION cairn_record_session_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO session_versions (namespace, session_id, version, status, user_id, labels, metadata, state, update_time, end_time)
  VALUES (OLD.namespace, OLD.session_id, OLD.version, OLD.status, OLD.user_id, OLD.labels, OLD.metadata, OLD.state, OLD.update_time, OLD.end_time)
  ON CONFLICT (namespace, session_id, version) DO UPDATE
    SET status = EXCLUDED.status, user_id = EXCLUDED.user_id, labels = EXCLUDED.labels, metadata = EXCLUDED.metadata,
        state = EXCLUDED.state, update_time = EXCLUDED.update_time, end_time = EXCLUDED.end_time;
  RETURN NULL;
END;
$$;

-- ON CONFLICT: a row left by a session deleted outside Cairn (no cascade)
-- and created again under its id is that older session's, not this one's.
CREATE TRIGGER sessions_record_version
  AFTER UPDATE ON sessions
  FOR EACH ROW
  WHEN (OLD.version IS DISTINCT FROM NEW.version
        AND coalesce(current_setting('cairn.session_history_versions', true), '') NOT IN ('0', '1'))
  EXECUTE FUNCTION cairn_record_session_version();
