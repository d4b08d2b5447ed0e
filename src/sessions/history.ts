// SQL for session history and forks. A session's current version lives in
// `sessions`; every version it left behind is in `session_versions`, written
// by a trigger on every update that changes the version
// (migrations/1763800800000_session_history.sql), so no write path has to
// remember it. History keeps the newest `keep` versions per session, the
// current one included: reads show exactly those (a version older is
// VERSION_PRUNED at once, as an expired row is invisible at once) and the
// reaper only reclaims the space.
import { selectList } from "../db/columns.js";
import { inBatches } from "../db/batches.js";
import type { Queryable, SessionsDeletedStep } from "../db/database.js";
import { createOnce, type Idempotency } from "../db/idempotency.js";
import { omitting, type Page, type PageLimits, type Paged, pagedSql, rowSize, toPage } from "../db/pages.js";
import { alreadyExists, type CairnError, notFound, versionPruned } from "../errors.js";
import { FIELDS, getSession, readSessions, SIZES, type SessionDocument, type SessionRecord } from "./store.js";

/** The per-connection setting that tells the trigger how many versions are kept (0 or 1: it records nothing). */
export const HISTORY_SETTING = "cairn.session_history_versions";

export const FORK_SCOPE = "cairn.v1.SessionService/ForkSession";

export interface SessionFork {
  sourceId: string;
  /** 0: the current version. */
  version: number;
  newSessionId: string;
  /** 0: every message. */
  upToSequence: number;
  idempotency: Idempotency | null;
}

/**
 * The versions of session $2 (namespace $1) that history shows when it
 * keeps $3, as rows shaped like `sessions`: the current row, and the
 * recorded versions newer than current - $3 with the session's fixed
 * fields (agent_id, create_time, parent) beside them.
 */
const VERSIONS = `(
    SELECT s.session_id, s.agent_id, s.user_id, s.status, s.labels, s.metadata, s.state, s.version,
           s.create_time, s.update_time, s.end_time, s.parent_session_id, s.parent_version
      FROM sessions s
     WHERE s.namespace = $1 AND s.session_id = $2
    UNION ALL
    SELECT s.session_id, s.agent_id, h.user_id, h.status, h.labels, h.metadata, h.state, h.version,
           s.create_time, h.update_time, h.end_time, s.parent_session_id, s.parent_version
      FROM sessions s
      JOIN session_versions h ON h.namespace = s.namespace AND h.session_id = s.session_id
     WHERE s.namespace = $1 AND s.session_id = $2 AND h.version > s.version - $3 AND h.version < s.version
  ) AS versions`;

/** Newest first, below the cursor $4 (NULL: from the current version), $5 rows, $6 bytes. */
function listSql(omit: readonly SessionDocument[]): string {
  return pagedSql({
    fields: omitting(FIELDS, omit),
    size: rowSize(SIZES, omit),
    from: `FROM ${VERSIONS} WHERE ($4::bigint IS NULL OR version < $4)`,
    order: [["version", "DESC"]],
    limit: "$5",
    budget: "$6",
  });
}

/**
 * Version `version` of a session (any version history shows, the current
 * one included). NOT_FOUND for an unknown session or a version it never
 * reached; VERSION_PRUNED for one history no longer keeps.
 */
export async function getSessionVersion(
  q: Queryable,
  ns: string,
  sessionId: string,
  version: number,
  keep: number,
  omit: readonly SessionDocument[] = [],
): Promise<SessionRecord> {
  const found = await q.query<SessionRecord>(`SELECT ${selectList(omitting(FIELDS, omit))} FROM ${VERSIONS} WHERE version = $4`, [
    ns,
    sessionId,
    keep,
    version,
  ]);
  if (found.rows[0]) return found.rows[0];
  throw (await versionMiss(q, ns, sessionId, version, keep)) ?? notFound("session", sessionId);
}

/**
 * Why history does not show version `version` (0: the current one) of a
 * session: NOT_FOUND for an unknown session or a version it never reached,
 * VERSION_PRUNED for one no longer kept; undefined when it does show it.
 */
async function versionMiss(q: Queryable, ns: string, sessionId: string, version: number, keep: number): Promise<CairnError | undefined> {
  const result = await q.query<{ current: number; oldest: number | null; held: boolean }>(
    `SELECT s.version AS current, kept.oldest, ($4::bigint IN (0, s.version) OR $4 = ANY (kept.versions)) AS held
       FROM sessions s,
            LATERAL (SELECT min(h.version) AS oldest, array_agg(h.version) AS versions FROM session_versions h
                      WHERE h.namespace = s.namespace AND h.session_id = s.session_id
                        AND h.version > s.version - $3 AND h.version < s.version) AS kept
      WHERE s.namespace = $1 AND s.session_id = $2`,
    [ns, sessionId, keep, version],
  );
  const row = result.rows[0];
  if (!row) return notFound("session", sessionId);
  if (row.held) return undefined;
  if (version > row.current) return notFound("session", sessionId, `it has no version ${version}; its current version is ${row.current}`);
  return versionPruned(sessionId, version, row.oldest ?? row.current);
}

/** One page of the versions history shows, newest first, below `beforeVersion`; NOT_FOUND for an unknown session. */
export async function listSessionVersions(
  q: Queryable,
  ns: string,
  sessionId: string,
  keep: number,
  limits: PageLimits,
  beforeVersion: number | undefined,
  omit: readonly SessionDocument[] = [],
): Promise<Page<SessionRecord>> {
  const result = await q.query<Paged<SessionRecord>>(listSql(omit), [ns, sessionId, keep, beforeVersion ?? null, limits.rows, limits.bytes]);
  // The first page always holds the current version; an empty later one may be past the oldest.
  if (result.rows.length === 0) await getSession(q, ns, sessionId);
  return toPage(result.rows);
}

/**
 * In one statement (one snapshot): the source at its version, the new
 * session (version 1, ACTIVE) with the parent link, and copies of the
 * source's messages up to $6 renumbered from 1 (sequence order, create
 * times kept); its next message follows them. No row: the source or its
 * version is missing, or the new id is taken.
 */
const FORK_SQL = `WITH source AS (
    SELECT agent_id, user_id, labels, metadata, state, version FROM ${VERSIONS}
     WHERE ($4::bigint = 0 OR version = $4)
     ORDER BY version DESC LIMIT 1
  ), copied AS (
    SELECT row_number() OVER (ORDER BY m.sequence) AS sequence, m.role, m.content, m.metadata, m.create_time
      FROM session_messages m
     WHERE m.namespace = $1 AND m.session_id = $2 AND ($6::bigint = 0 OR m.sequence <= $6)
       AND EXISTS (SELECT 1 FROM source)
  ), fork AS (
    INSERT INTO sessions (namespace, session_id, agent_id, user_id, status, labels, metadata, state,
                          parent_session_id, parent_version, last_message_sequence)
    SELECT $1, $5, agent_id, user_id, 'ACTIVE', labels, metadata, state, $2, version, (SELECT count(*) FROM copied)
      FROM source
    ON CONFLICT (namespace, session_id) DO NOTHING
    RETURNING ${selectList(FIELDS)}
  ), messages AS (
    INSERT INTO session_messages (namespace, session_id, sequence, role, content, metadata, create_time)
    SELECT $1, fork."sessionId", c.sequence, c.role, c.content, c.metadata, c.create_time FROM fork, copied c
  )
  SELECT * FROM fork`;

/** Creates the fork, once per request id; ALREADY_EXISTS when its id is taken. */
export function forkSession(q: Queryable, ns: string, fork: SessionFork, keep: number): Promise<SessionRecord> {
  return q.atomic((tx) =>
    createOnce(tx, ns, {
      scope: FORK_SCOPE,
      idempotency: fork.idempotency,
      resource: "session",
      resourceId: fork.newSessionId,
      read: async (id) => (await readSessions(tx, ns, [id])).get(id),
      create: async () => {
        const created = await tx.query<SessionRecord>(FORK_SQL, [ns, fork.sourceId, keep, fork.version, fork.newSessionId, fork.upToSequence]);
        if (created.rows[0]) return created.rows[0];
        throw (await versionMiss(tx, ns, fork.sourceId, fork.version, keep)) ?? alreadyExists("session", fork.newSessionId);
      },
    }),
  );
}

/** Deleting sessions deletes their history (in the deleting transaction; see the migration for why not a foreign key). */
export const onSessionsDeleted: SessionsDeletedStep = async (tx, ns, sessionIds) => {
  await tx.query(`DELETE FROM session_versions WHERE namespace = $1 AND session_id = ANY ($2::text[])`, [ns, sessionIds]);
};

interface SweepBatch {
  scanned: number;
  removed: number;
  lastNamespace: string | null;
  lastSessionId: string | null;
}

/**
 * Deletes the versions past the newest `keep` of each session, every
 * namespace, walking sessions in primary-key order a batch at a time; each
 * batch reads its sessions from the primary key and their old versions from
 * session_versions' key. Returns how many it deleted.
 */
export async function pruneVersions(q: Queryable, keep: number): Promise<number> {
  const any = await q.query(`SELECT 1 FROM session_versions LIMIT 1`);
  if (any.rows.length === 0) return 0;
  let after = { namespace: "", sessionId: "" };
  let removed = 0;
  await inBatches(async (limit) => {
    const batch = (
      await q.query<SweepBatch>(
        `WITH batch AS (
           SELECT namespace, session_id, version FROM sessions
            WHERE (namespace, session_id) > ($1, $2)
            ORDER BY namespace, session_id LIMIT $3
         ), pruned AS (
           DELETE FROM session_versions h USING batch b
            WHERE b.version > $4 AND h.namespace = b.namespace AND h.session_id = b.session_id AND h.version <= b.version - $4
           RETURNING 1
         ), last AS (
           SELECT namespace, session_id FROM batch ORDER BY namespace DESC, session_id DESC LIMIT 1
         )
         SELECT (SELECT count(*) FROM batch)::int AS scanned, (SELECT count(*) FROM pruned)::int AS removed,
                (SELECT namespace FROM last) AS "lastNamespace", (SELECT session_id FROM last) AS "lastSessionId"`,
        [after.namespace, after.sessionId, limit, keep],
      )
    ).rows[0]!;
    removed += batch.removed;
    if (batch.lastNamespace !== null) after = { namespace: batch.lastNamespace, sessionId: batch.lastSessionId! };
    return batch.scanned;
  });
  return removed;
}
