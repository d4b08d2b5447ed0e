// Sessions and messages in their wire shapes: store records in, the
// generated messages SessionService (and Commit) answer with out. No
// validation, no SQL.
import { type GetSessionStatsResponse, type Message, type Session, SessionStatus } from "@cairn/client";
import { durationFromMicros, timestampFromIso } from "../grpc/convert.js";
import { enumCodec } from "../grpc/enums.js";
import type { Appended, MessageRecord } from "./messages.js";
import type { SessionStats } from "./queries.js";
import type { SessionRecord, SessionStatusName } from "./store.js";

/** SessionStatus values as the store names them, and back. */
export const STATUS = enumCodec<SessionStatus, SessionStatusName>(SessionStatus, "SESSION_STATUS_");

export function toWireSession(record: SessionRecord): Session {
  return {
    sessionId: record.sessionId,
    agentId: record.agentId,
    userId: record.userId,
    status: STATUS.toWire(record.status),
    labels: record.labels,
    metadata: record.metadata ?? undefined,
    state: record.state ?? undefined,
    version: record.version,
    createTime: timestampFromIso(record.createTime),
    updateTime: timestampFromIso(record.updateTime),
    endTime: timestampFromIso(record.endTime),
    parentSessionId: record.parentSessionId ?? "",
    parentVersion: record.parentVersion ?? 0,
  };
}

export function toWireMessage(record: MessageRecord): Message {
  return {
    sessionId: record.sessionId,
    sequence: record.sequence,
    role: record.role,
    content: record.content,
    metadata: record.metadata ?? undefined,
    createTime: timestampFromIso(record.createTime),
  };
}

/** The AppendMessages response for what appendMessages returned. */
export function toWireAppended(appended: Appended): { messages: Message[]; session: Session | undefined } {
  return { messages: appended.messages.map(toWireMessage), session: appended.session ? toWireSession(appended.session) : undefined };
}

/** The GetSessionStats response for what sessionStats returned. */
export function toWireSessionStats(stats: SessionStats): GetSessionStatsResponse {
  return {
    total: stats.total,
    byStatus: Object.fromEntries(Object.entries(stats.byStatus).map(([name, count]) => [STATUS.fullName(name as SessionStatusName), count])),
    avgDuration: stats.avgDurationMicros === null ? undefined : durationFromMicros(stats.avgDurationMicros),
    oldestActiveCreateTime: timestampFromIso(stats.oldestActiveCreateTime),
  };
}
