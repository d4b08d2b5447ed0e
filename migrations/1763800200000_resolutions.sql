-- Up Migration
-- Policy resolutions with a TTL. An expired row is invisible at once (every
-- read filters on expire_time); the reaper only reclaims the space.

CREATE TABLE resolutions (
  resolution_id     text PRIMARY KEY,
  request_id        text NOT NULL,
  agent_id          text NOT NULL,
  session_id        text NOT NULL,
  decision          text NOT NULL CHECK (decision IN ('ALLOW', 'DENY', 'PARTIAL')),
  context_blocks    jsonb NOT NULL DEFAULT '[]',
  allowed_actions   jsonb NOT NULL DEFAULT '[]',
  denied_actions    jsonb NOT NULL DEFAULT '[]',
  policies_applied  jsonb NOT NULL DEFAULT '[]',
  metadata          jsonb,
  create_time       timestamptz NOT NULL DEFAULT now(),
  -- NULL: never expires.
  expire_time       timestamptz
);

-- Newest first, overall and per common filter.
CREATE INDEX resolutions_create_time_idx ON resolutions (create_time DESC, resolution_id DESC);
CREATE INDEX resolutions_session_idx ON resolutions (session_id, create_time DESC, resolution_id DESC);
CREATE INDEX resolutions_agent_idx ON resolutions (agent_id, create_time DESC, resolution_id DESC);
CREATE INDEX resolutions_request_idx ON resolutions (request_id);
CREATE INDEX resolutions_expire_time_idx ON resolutions (expire_time) WHERE expire_time IS NOT NULL;
