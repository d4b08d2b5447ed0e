-- Up Migration
-- A retried create returns the first call's response, not the resource as it
-- is now (updated, leased, finished since): keep that response beside the
-- request id. json, not jsonb: it is only ever returned as it was written.
-- NULL for claims recorded before this column existed.
ALTER TABLE request_ids ADD COLUMN response json;
