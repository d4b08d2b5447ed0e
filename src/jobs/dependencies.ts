// Job dependencies (Job.depends_on). A job with parents is BLOCKED until
// every parent SUCCEEDED, then runnable (AVAILABLE, or SCHEDULED until a
// later run_time); a parent that goes DEAD or CANCELLED cancels its BLOCKED
// children, and theirs, each one's last_error naming its own parent.
// Parents are jobs of the same namespace; a BatchEnqueueJobs may also name
// jobs of the same batch, in any order (a cycle is INVALID_ARGUMENT).
//
// Why no child is ever left BLOCKED by a race (READ COMMITTED):
// - An enqueue marks its parents (has_children) and share-locks them
//   (FOR SHARE) until it commits, and decides from the states it reads
//   under that lock. A parent's transition (an UPDATE) either committed
//   before that read, which then sees it, or waits for the enqueue to
//   commit; the transition looks for children in a later statement, whose
//   snapshot includes the new child and its edge.
// - Completions skip this work (and its transaction) for a job without
//   has_children. The mark is written by an UPDATE, so a completion that
//   waited for the marking enqueue re-reads the row and sees it.
// - Two parents of one child succeeding at once: each first locks the
//   BLOCKED children (FOR UPDATE, in job_id order), and a later statement
//   checks "every parent SUCCEEDED"; whichever locks second sees the
//   other's commit.
// - Cancelling descends one generation per statement, so each generation
//   sees the children added to the one before it.
import { selectList } from "../db/columns.js";
import type { Queryable } from "../db/database.js";
import { CHANNELS } from "../db/notify-hub.js";
import { type CairnError, failedPrecondition, invalidArgument } from "../errors.js";
import { checkId, checkUnique, type Violations } from "../grpc/validate.js";
// store.js imports this file too: its values are used only inside functions, once both are loaded.
import { FIELDS, find, type JobRecord, type JobStateName, type NewJob, wakeKeySql } from "./store.js";

export const MAX_PARENTS = 100;

/** depends_on of one job as a request gives it: ids, at most MAX_PARENTS, none twice, not the job itself. */
export function checkDependsOn(v: Violations, at: string, jobId: string, dependsOn: string[]): void {
  const field = `${at}job.depends_on`;
  if (dependsOn.length > MAX_PARENTS) v.add(field, `must name at most ${MAX_PARENTS} jobs`);
  dependsOn.forEach((id, i) => {
    checkId(v, `${field}[${i}]`, id, true);
    if (id !== "" && id === jobId) v.add(`${field}[${i}]`, "a job cannot depend on itself");
  });
  checkUnique(v, field, dependsOn);
}

/**
 * A batch's jobs may depend on one another (by job_id), in any order, but
 * not in a cycle: each cycle is named at the depends_on entry that closes it.
 */
export function checkBatchCycles(v: Violations, jobs: { at: string; jobId: string; dependsOn: string[] }[]): void {
  const index = new Map(jobs.map((j, i) => [j.jobId, i] as const).filter(([id]) => id !== ""));
  // 0: not visited, 1: on the current path, 2: done.
  const mark = jobs.map(() => 0);
  for (let root = 0; root < jobs.length; root++) {
    if (mark[root] !== 0) continue;
    // An explicit stack of [job, next depends_on position], so a long chain cannot overflow the call stack.
    const stack: [number, number][] = [[root, 0]];
    mark[root] = 1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const [job, k] = top;
      const parents = jobs[job]!.dependsOn;
      if (k === parents.length) {
        mark[job] = 2;
        stack.pop();
        continue;
      }
      top[1] = k + 1;
      const parent = index.get(parents[k]!);
      if (parent === undefined || mark[parent] === 2) continue;
      if (mark[parent] === 1) {
        const path = [...stack.slice(stack.findIndex(([j]) => j === parent)).map(([j]) => jobs[j]!.jobId), jobs[parent]!.jobId];
        v.add(`${jobs[job]!.at}job.depends_on[${k}]`, `forms a cycle: ${path.join(" -> ")}`);
        continue;
      }
      mark[parent] = 1;
      stack.push([parent, 0]);
    }
  }
}

/**
 * Marks these jobs as parents (has_children) and share-locks them until
 * the transaction ends, so none changes state meanwhile; returns the states
 * of those that exist.
 */
async function lockParents(tx: Queryable, ns: string, ids: string[]): Promise<Map<string, JobStateName>> {
  if (ids.length === 0) return new Map();
  await tx.query(`UPDATE jobs SET has_children = true WHERE namespace = $1 AND job_id = ANY ($2::text[]) AND NOT has_children`, [ns, ids]);
  const locked = await tx.query<{ job_id: string; state: JobStateName }>(
    `SELECT job_id, state FROM jobs WHERE namespace = $1 AND job_id = ANY ($2::text[]) ORDER BY job_id FOR SHARE`,
    [ns, ids],
  );
  return new Map(locked.rows.map((r) => [r.job_id, r.state]));
}

/** After these parents SUCCEEDED, in the same transaction: their BLOCKED children whose parents all succeeded become runnable. */
export async function releaseChildren(tx: Queryable, ns: string, parentIds: string[]): Promise<void> {
  const children = await tx.query<{ job_id: string }>(
    `SELECT job_id FROM jobs
      WHERE namespace = $1 AND state = 'BLOCKED'
        AND job_id IN (SELECT job_id FROM job_dependencies WHERE namespace = $1 AND parent_id = ANY ($2::text[]))
      ORDER BY job_id
        FOR UPDATE`,
    [ns, parentIds],
  );
  await releaseReady(tx, ns, children.rows.map((r) => r.job_id));
}

/**
 * Of these BLOCKED jobs (locked by the caller, or its own new rows), those
 * whose parents have all SUCCEEDED become runnable, and their queues are
 * woken at commit. A parent that no longer exists was finished and
 * deleted by retention after its children were settled: it holds nothing
 * back. run_time becomes the release time unless it is later, so the job
 * queues (and ages, in oldest_available_time) from its release.
 */
async function releaseReady(tx: Queryable, ns: string, jobIds: string[]): Promise<void> {
  if (jobIds.length === 0) return;
  await tx.query(
    `WITH released AS (
       UPDATE jobs c SET state = CASE WHEN c.run_time > now() THEN 'SCHEDULED' ELSE 'AVAILABLE' END,
              run_time = greatest(c.run_time, now()), update_time = now()
        WHERE c.namespace = $1 AND c.job_id = ANY ($2::text[]) AND c.state = 'BLOCKED'
          AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.namespace = $1 AND p.job_id = ANY (c.depends_on) AND p.state <> 'SUCCEEDED')
        RETURNING c.queue
     )
     SELECT pg_notify('${CHANNELS.jobs}', ${wakeKeySql("$1", "queue")}) FROM released GROUP BY queue`,
    [ns, jobIds],
  );
}

/**
 * After these parents went DEAD or CANCELLED, in the same transaction:
 * their BLOCKED children are CANCELLED, then those children's, to the end.
 * Each one's last_error names a parent of its own that is DEAD or CANCELLED
 * (the first in its depends_on).
 */
export async function cancelDescendants(tx: Queryable, ns: string, parentIds: string[]): Promise<void> {
  let generation = parentIds;
  // A job leaves BLOCKED once, so no job comes twice and this ends.
  while (generation.length > 0) {
    const cancelled = await tx.query<{ job_id: string }>(
      `WITH doomed AS (
         SELECT c.job_id, p.job_id AS parent_id, p.state AS parent_state
           FROM jobs c
          CROSS JOIN LATERAL (
            SELECT p.job_id, p.state FROM unnest(c.depends_on) WITH ORDINALITY AS a (parent_id, n)
              JOIN jobs p ON p.namespace = c.namespace AND p.job_id = a.parent_id
             WHERE p.state IN ('DEAD', 'CANCELLED')
             ORDER BY a.n LIMIT 1) p
          WHERE c.namespace = $1 AND c.state = 'BLOCKED'
            AND c.job_id IN (SELECT job_id FROM job_dependencies WHERE namespace = $1 AND parent_id = ANY ($2::text[]))
          ORDER BY c.job_id
            FOR UPDATE OF c
       )
       UPDATE jobs c SET state = 'CANCELLED', finish_time = now(), update_time = now(),
              last_error = jsonb_build_object(
                'message', format('parent job %s is %s', d.parent_id, d.parent_state),
                'details', jsonb_build_object('parent_job_id', d.parent_id, 'parent_state', 'JOB_STATE_' || d.parent_state))
         FROM doomed d
        WHERE c.namespace = $1 AND c.job_id = d.job_id
        RETURNING c.job_id`,
      [ns, generation],
    );
    generation = cancelled.rows.map((r) => r.job_id);
  }
}

/**
 * RetryJob of a job with parents, in its transaction (the job just set
 * BLOCKED): runnable at once when they all succeeded, BLOCKED while one is
 * unfinished, and FAILED_PRECONDITION while one is DEAD or CANCELLED.
 */
export async function reblock(tx: Queryable, ns: string, job: JobRecord): Promise<JobRecord> {
  const states = await lockParents(tx, ns, job.dependsOn);
  const gone = job.dependsOn.find((id) => states.get(id) === "DEAD" || states.get(id) === "CANCELLED");
  if (gone !== undefined) {
    throw failedPrecondition(`parent job ${gone} is ${states.get(gone)}; retry it first`, { job_id: job.jobId, parent_job_id: gone });
  }
  await releaseReady(tx, ns, [job.jobId]);
  return (await find(tx, ns, job.jobId))!;
}

/** An enqueue as dependencies see it: its namespace, job and place in the request. */
export interface Dependent {
  ns: string;
  job: NewJob;
  at?: string;
}

/**
 * Before inserting (in the enqueue's transaction): locks the parents that
 * must already exist (all of them, or those outside the batch when
 * `sameCall`) and returns, per open enqueue, INVALID_ARGUMENT naming each
 * depends_on entry that is no job of its namespace.
 */
export async function refuseMissingParents(tx: Queryable, enqueues: Dependent[], open: boolean[], sameCall: boolean): Promise<(CairnError | undefined)[]> {
  const inBatch = new Set(sameCall ? enqueues.map((e) => e.job.jobId) : []);
  const external = (e: Dependent) => (e.job.dependsOn ?? []).filter((id) => !inBatch.has(id));
  const byNamespace = new Map<string, Set<string>>();
  enqueues.forEach((e, i) => {
    if (!open[i]) return;
    for (const id of external(e)) byNamespace.set(e.ns, (byNamespace.get(e.ns) ?? new Set()).add(id));
  });
  const found = new Map<string, Set<string>>();
  for (const [ns, ids] of byNamespace) found.set(ns, new Set((await lockParents(tx, ns, [...ids])).keys()));
  return enqueues.map((e, i) => {
    if (!open[i]) return undefined;
    const missing = (e.job.dependsOn ?? [])
      .map((id, k) => ({ id, k }))
      .filter(({ id }) => !inBatch.has(id) && !found.get(e.ns)?.has(id));
    if (missing.length === 0) return undefined;
    return invalidArgument(
      missing.map(({ id, k }) => ({ field: `${e.at ?? ""}job.depends_on[${k}]`, description: `no job ${JSON.stringify(id)} in this namespace` })),
    );
  });
}

/**
 * After inserting (in the enqueue's transaction), the jobs just created
 * with parents, all BLOCKED: records their edges and settles each one, as
 * its parents are now: CANCELLED when one is DEAD or CANCELLED (with its
 * descendants in the batch), runnable when all SUCCEEDED, else it stays
 * BLOCKED. `resolve` maps a parent named in the same batch to the job its
 * enqueue returned (a deduplicated one stands for the job it was
 * deduplicated to). Returns the settled records.
 */
export async function settleNewDependents(
  tx: Queryable,
  created: { ns: string; job: JobRecord }[],
  resolve: (ns: string, id: string) => string,
): Promise<{ ns: string; job: JobRecord }[]> {
  const byNamespace = new Map<string, JobRecord[]>();
  for (const { ns, job } of created) byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), job]);
  const settled: { ns: string; job: JobRecord }[] = [];
  for (const [ns, jobs] of byNamespace) {
    const resolved = await resolveParents(tx, ns, jobs, (id) => resolve(ns, id));
    await tx.query(
      `INSERT INTO job_dependencies (namespace, parent_id, job_id)
       SELECT $1, e.parent_id, e.job_id FROM jsonb_to_recordset($2::jsonb) AS e (parent_id text, job_id text)
       ON CONFLICT DO NOTHING`,
      [ns, JSON.stringify(resolved.flatMap((j) => j.dependsOn.map((parent_id) => ({ parent_id, job_id: j.jobId }))))],
    );
    const states = await lockParents(tx, ns, [...new Set(resolved.flatMap((j) => j.dependsOn))]);
    const gone = [...states].filter(([, state]) => state === "DEAD" || state === "CANCELLED").map(([id]) => id);
    await cancelDescendants(tx, ns, gone);
    await releaseReady(tx, ns, resolved.map((j) => j.jobId));
    for (const job of await reread(tx, ns, resolved.map((j) => j.jobId))) settled.push({ ns, job });
  }
  return settled;
}

/** The jobs with their parents resolved; a job whose list changed (a parent deduplicated in its batch) is stored with the new one. */
async function resolveParents(tx: Queryable, ns: string, jobs: JobRecord[], resolve: (id: string) => string): Promise<JobRecord[]> {
  const resolved = jobs.map((j) => ({ ...j, dependsOn: [...new Set(j.dependsOn.map(resolve))] }));
  const changed = resolved.filter((j, i) => j.dependsOn.join("\u0000") !== jobs[i]!.dependsOn.join("\u0000"));
  if (changed.length > 0) {
    await tx.query(
      `UPDATE jobs j SET depends_on = c.depends_on
         FROM jsonb_to_recordset($2::jsonb) AS c (job_id text, depends_on text[])
        WHERE j.namespace = $1 AND j.job_id = c.job_id`,
      [ns, JSON.stringify(changed.map((j) => ({ job_id: j.jobId, depends_on: j.dependsOn })))],
    );
  }
  return resolved;
}

async function reread(tx: Queryable, ns: string, jobIds: string[]): Promise<JobRecord[]> {
  const result = await tx.query<JobRecord>(`SELECT ${selectList(FIELDS)} FROM jobs WHERE namespace = $1 AND job_id = ANY ($2::text[])`, [ns, jobIds]);
  return result.rows;
}
