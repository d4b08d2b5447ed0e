-- Up Migration
-- Session writes of issue 12: state patches, end-time listings, role filters.

-- RFC 7386 JSON merge patch, applied in the database so that an UPDATE
-- merges into the row it has locked: concurrent patches of different keys
-- all survive, with no read-modify-write in the client. A null in the patch
-- deletes the key, an object merges recursively, anything else replaces;
-- a target that is not an object (or is NULL) counts as {}. Recursion is
-- bounded by the patch's nesting (at most the JSON depth limit).
CREATE FUNCTION cairn_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  base jsonb := CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}'::jsonb END;
BEGIN
  IF jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN
    RETURN patch;
  END IF;
  -- Two copies of the target whatever the patch's size: deletions, then one
  -- concatenation of every key the patch sets.
  RETURN (base - ARRAY(SELECT key FROM jsonb_each(patch) WHERE jsonb_typeof(value) = 'null'))
    || coalesce((SELECT jsonb_object_agg(key, CASE WHEN jsonb_typeof(value) = 'object'
                                                   THEN cairn_merge_patch(base -> key, value)
                                                   ELSE value END)
                   FROM jsonb_each(patch)
                  WHERE jsonb_typeof(value) <> 'null'), '{}'::jsonb);
END;
$$;

-- ListSessions' ended_after / ended_before and order_by end_time (both
-- directions: a backward scan serves " desc"; the sessions without an end
-- time are read from the same index with end_time IS NULL, in id order).
-- updated_after / updated_before use sessions_update_time_idx, and
-- parent_session_id sessions_parent_create_time_idx (1763800800000).
CREATE INDEX sessions_end_time_idx ON sessions (namespace, end_time, session_id);

-- ListMessages' roles filter: one role's messages of a session in sequence
-- order, without reading the session's other messages.
CREATE INDEX session_messages_role_idx ON session_messages (namespace, session_id, role, sequence);
