-- Up Migration
-- Metric points (MetricService): one row per recorded value, append-only.
-- A series is a (name, entity, labels) combination; points have no identity
-- of their own, so there is no primary key, only an index per query shape,
-- each led by the namespace and ending in time, so a time range of one
-- series, of every entity of a name, or of every name of an entity is one
-- index range scan however many points the table holds.

CREATE TABLE metric_points (
  namespace   text NOT NULL,
  name        text NOT NULL,
  entity      text NOT NULL,
  time        timestamptz NOT NULL,
  value       double precision NOT NULL,
  labels      jsonb NOT NULL DEFAULT '{}',
  -- Set: the point is deleted with this session (no foreign key: a point
  -- may name a session that does not exist, or not yet).
  session_id  text
);

CREATE INDEX metric_points_series_idx ON metric_points (namespace, name, entity, time);
CREATE INDEX metric_points_name_idx ON metric_points (namespace, name, time);
CREATE INDEX metric_points_entity_idx ON metric_points (namespace, entity, time);
-- The session cascade.
CREATE INDEX metric_points_session_idx ON metric_points (namespace, session_id) WHERE session_id IS NOT NULL;
-- Retention (the reaper, across namespaces). A btree, not BRIN: retention
-- deletes the oldest rows and new ones reuse their space, so a BRIN range's
-- minimum soon stays old for good and every range would match the purge.
CREATE INDEX metric_points_time_idx ON metric_points (time);
