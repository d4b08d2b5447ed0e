// The role each method needs in the call's namespace (API.md "Namespaces and
// security"): reader < writer < admin, each including the ones before. An
// explicit table, method by method: a new method has no role until one is
// written here, and test/auth.test.ts fails for any method of Cairn's
// services missing from it.

export type Role = "reader" | "writer" | "admin";

const RANK: Record<Role, number> = { reader: 1, writer: 2, admin: 3 };

export function isRole(value: unknown): value is Role {
  return typeof value === "string" && Object.hasOwn(RANK, value);
}

/** Whether `held` includes `required`. */
export function allows(held: Role | undefined, required: Role): boolean {
  return held !== undefined && RANK[held] >= RANK[required];
}

const READER = "reader";
const WRITER = "writer";
const ADMIN = "admin";

/** By full method name ("cairn.v1.SessionService/GetSession"). */
export const METHOD_ROLES: Readonly<Record<string, Role>> = {
  "cairn.v1.SessionService/CreateSession": WRITER,
  "cairn.v1.SessionService/GetSession": READER,
  "cairn.v1.SessionService/ListSessionVersions": READER,
  "cairn.v1.SessionService/ForkSession": WRITER,
  "cairn.v1.SessionService/UpdateSession": WRITER,
  "cairn.v1.SessionService/DeleteSession": WRITER,
  "cairn.v1.SessionService/ListSessions": READER,
  "cairn.v1.SessionService/CountSessions": READER,
  "cairn.v1.SessionService/BatchGetSessions": READER,
  "cairn.v1.SessionService/BatchCreateSessions": WRITER,
  "cairn.v1.SessionService/BatchDeleteSessions": WRITER,
  "cairn.v1.SessionService/GetSessionStats": READER,
  "cairn.v1.SessionService/AppendMessages": WRITER,
  "cairn.v1.SessionService/ListMessages": READER,
  "cairn.v1.SessionService/BatchUpdateSessions": WRITER,
  "cairn.v1.SessionService/DeleteMessages": WRITER,
  "cairn.v1.SessionService/ImportSessions": ADMIN,

  "cairn.v1.ResolutionService/CreateResolution": WRITER,
  "cairn.v1.ResolutionService/BatchCreateResolutions": WRITER,
  "cairn.v1.ResolutionService/GetResolution": READER,
  "cairn.v1.ResolutionService/ListResolutions": READER,
  "cairn.v1.ResolutionService/DeleteResolution": WRITER,
  "cairn.v1.ResolutionService/PurgeExpiredResolutions": ADMIN,
  "cairn.v1.ResolutionService/ImportResolutions": ADMIN,

  "cairn.v1.TraceEventService/AppendEvents": WRITER,
  "cairn.v1.TraceEventService/IngestEvents": WRITER,
  "cairn.v1.TraceEventService/ListTraceEvents": READER,
  "cairn.v1.TraceEventService/ListSessionEvents": READER,
  "cairn.v1.TraceEventService/SubscribeEvents": READER,
  "cairn.v1.TraceEventService/VerifyTrace": READER,

  "cairn.v1.KeyValueService/Get": READER,
  "cairn.v1.KeyValueService/Put": WRITER,
  "cairn.v1.KeyValueService/Delete": WRITER,
  "cairn.v1.KeyValueService/List": READER,
  "cairn.v1.KeyValueService/Count": READER,
  "cairn.v1.KeyValueService/BatchGet": READER,
  "cairn.v1.KeyValueService/BatchPut": WRITER,
  "cairn.v1.KeyValueService/BatchDelete": WRITER,
  "cairn.v1.KeyValueService/Increment": WRITER,
  "cairn.v1.KeyValueService/PurgeExpired": ADMIN,
  "cairn.v1.KeyValueService/Watch": READER,

  // Each of its twelve operation kinds is a writer method on its own, so writer suffices.
  "cairn.v1.TransactionService/Commit": WRITER,

  "cairn.v1.MetricService/RecordMetrics": WRITER,
  "cairn.v1.MetricService/QueryMetrics": READER,

  "cairn.v1.JobService/EnqueueJob": WRITER,
  "cairn.v1.JobService/BatchEnqueueJobs": WRITER,
  "cairn.v1.JobService/LeaseJobs": WRITER,
  "cairn.v1.JobService/StreamJobs": WRITER,
  "cairn.v1.JobService/CompleteJob": WRITER,
  "cairn.v1.JobService/BatchCompleteJobs": WRITER,
  "cairn.v1.JobService/FailJob": WRITER,
  "cairn.v1.JobService/ExtendLease": WRITER,
  "cairn.v1.JobService/CancelJob": WRITER,
  "cairn.v1.JobService/RetryJob": ADMIN,
  "cairn.v1.JobService/GetJob": READER,
  "cairn.v1.JobService/ListJobs": READER,
  "cairn.v1.JobService/GetQueueStats": READER,
  "cairn.v1.JobService/PauseQueue": ADMIN,
  "cairn.v1.JobService/ResumeQueue": ADMIN,
  "cairn.v1.JobService/GetQueueConfig": READER,
  "cairn.v1.JobService/UpdateQueueConfig": ADMIN,
  "cairn.v1.JobService/CreateSchedule": ADMIN,
  "cairn.v1.JobService/GetSchedule": READER,
  "cairn.v1.JobService/ListSchedules": READER,
  "cairn.v1.JobService/UpdateSchedule": ADMIN,
  "cairn.v1.JobService/DeleteSchedule": ADMIN,
  "cairn.v1.JobService/PauseSchedule": ADMIN,
  "cairn.v1.JobService/ResumeSchedule": ADMIN,
  "cairn.v1.JobService/TriggerSchedule": ADMIN,
};
