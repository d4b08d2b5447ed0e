// Builds the grpc.Server: Cairn's five services, health and reflection.
import * as grpc from "@grpc/grpc-js";
import {
  JobServiceService,
  KeyValueServiceService,
  MetricServiceService,
  ResolutionServiceService,
  SessionServiceService,
  TraceEventServiceService,
  TransactionServiceService,
} from "@cairn/client";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { type CallerSettler, openDoor } from "./auth/caller.js";
import type { Config } from "./config.js";
import type { Database } from "./db/database.js";
import { inBatches } from "./db/batches.js";
import { purgeRequestIdsBatch } from "./db/idempotency.js";
import type { NotifyHub } from "./db/notify-hub.js";
import { bindService, type HandlerDeps, type ServiceDeps } from "./grpc/handlers.js";
import { callInterceptor } from "./grpc/interceptor.js";
import { StreamRegistry } from "./grpc/streams.js";
import { addReflection } from "./grpc/reflection.js";
import type { Logger } from "./logger.js";
import type { CairnMetrics } from "./ops/metrics.js";
import { type BackgroundLoop, LOCKS, Reaper } from "./reaper.js";
import { scheduleHandlers } from "./jobs/schedule-service.js";
import { ScheduleTicker } from "./jobs/schedule-ticker.js";
import { jobHandlers } from "./jobs/service.js";
import * as jobs from "./jobs/store.js";
import { keyValueHandlers } from "./keyvalue/service.js";
import * as keyValue from "./keyvalue/store.js";
import { metricHandlers } from "./metrics/service.js";
import * as metricPoints from "./metrics/store.js";
import { resolutionHandlers } from "./resolutions/service.js";
import * as resolutions from "./resolutions/store.js";
import * as sessionHistory from "./sessions/history.js";
import { sessionHandlers } from "./sessions/service.js";
import { traceHandlers } from "./traces/service.js";
import { transactionHandlers } from "./transactions/service.js";
import * as traces from "./traces/store.js";

/** The full name of the service a ts-proto definition describes ("cairn.v1.SessionService"). */
function serviceName(definition: Record<string, { path: string }>): string {
  return Object.values(definition)[0]!.path.split("/")[1]!;
}

export interface BuiltServer {
  server: grpc.Server;
  streams: StreamRegistry;
  /** Background loops: TTL purges and retention; job lease rescue; the schedule ticker. */
  background: BackgroundLoop[];
  setServing(serving: boolean): void;
  /** Ends every wait for work at once (LeaseJobs' wait): the daemon is stopping. */
  beginStopping(): void;
}

export function buildServer(
  config: Config,
  db: Database,
  hub: NotifyHub,
  log: Logger,
  callers: CallerSettler = openDoor,
  metrics?: CairnMetrics,
  liveDb: Database = db,
): BuiltServer {
  const server = new grpc.Server({
    // First (and only) interceptor: it must see grpc-js's own statuses too.
    interceptors: [callInterceptor(log, callers, metrics?.grpc, db.tracing)],
    "grpc.max_receive_message_length": config.limits.maxMessageBytes,
    "grpc.max_send_message_length": config.limits.maxMessageBytes,
    "grpc.max_connection_idle_ms": config.connectionIdleMs,
    // Pings on quiet connections find peers that vanished without a FIN.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
  });
  const streams = new StreamRegistry(config.streams);
  const deps: HandlerDeps = {
    streams,
    streamLimits: config.streams,
    maxMessageBytes: config.limits.maxMessageBytes,
    maxJsonDepth: config.limits.maxJsonDepth,
  };
  const stopping = new AbortController();

  /** Cairn's own services, by full name: their health follows the database. */
  const cairnServices: string[] = [];
  const serve = <S extends Parameters<typeof bindService>[0]>(definition: S, handlers: Parameters<typeof bindService<S>>[1]) => {
    const bound = bindService(definition, handlers, deps);
    server.addService(bound.definition, bound.implementation);
    cairnServices.push(serviceName(definition));
  };
  const services: ServiceDeps = {
    db,
    liveDb,
    limits: config.limits,
    hub,
    progressIntervalMs: config.progressIntervalMs,
    // What deleting sessions does to every other service's rows, in one transaction.
    sessionCascade: [
      sessionHistory.onSessionsDeleted,
      resolutions.onSessionsDeleted,
      traces.onSessionsDeleted,
      keyValue.onSessionsDeleted,
      jobs.onSessionsDeleted,
      metricPoints.onSessionsDeleted,
    ],
    sessionHistoryVersions: config.sessionHistoryVersions,
    stopping: stopping.signal,
  };
  serve(SessionServiceService, sessionHandlers(services));
  serve(ResolutionServiceService, resolutionHandlers(services));
  serve(TraceEventServiceService, traceHandlers(services, metrics?.traceEventsAppended));
  serve(TransactionServiceService, transactionHandlers(services, metrics?.traceEventsAppended));
  serve(KeyValueServiceService, keyValueHandlers(services));
  serve(MetricServiceService, metricHandlers(services));
  serve(JobServiceService, { ...jobHandlers(services), ...scheduleHandlers(services) });

  const health = new HealthImplementation({ "": "NOT_SERVING" });
  health.addToServer(server);
  const setServing = (serving: boolean) => {
    const status: ServingStatus = serving ? "SERVING" : "NOT_SERVING";
    for (const name of ["", ...cairnServices]) health.setStatus(name, status);
  };
  setServing(false);

  // Everything the server serves, for reflection's list_services.
  const listed = [...cairnServices, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];
  addReflection(server, () => listed);
  const q = db.on({});
  // Background work spans every namespace (null); each row keeps its own.
  const everyNamespace = null;
  const reaper = new Reaper(
    db.pool,
    [
      { name: "expired resolutions", run: () => resolutions.purgeExpired(q, everyNamespace) },
      { name: "expired entries", run: () => keyValue.purgeExpired(q, everyNamespace) },
      { name: "key-value change log", run: () => keyValue.compactChanges(q, config.watchRetentionMs) },
      { name: "finished jobs", run: () => jobs.deleteFinished(q, config.jobRetentionMs) },
      { name: "metric points past retention", run: () => metricPoints.deleteExpired(q, config.metricRetentionMs) },
      { name: "session versions past the history depth", run: () => sessionHistory.pruneVersions(q, config.sessionHistoryVersions) },
      { name: "request ids past the idempotency window", run: () => inBatches((limit) => purgeRequestIdsBatch(q, limit)) },
    ],
    config.reaperIntervalMs,
    log,
  );
  const rescue = new Reaper(
    db.pool,
    [{ name: "expired job leases", run: () => jobs.rescueExpiredLeases(q) }],
    config.leaseRescueIntervalMs,
    log,
    LOCKS.leaseRescue,
  );
  const schedules = new ScheduleTicker(q, config.scheduleTickMs, log);
  return { server, streams, background: [reaper, rescue, schedules], setServing, beginStopping: () => stopping.abort() };
}
