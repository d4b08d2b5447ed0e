// Builds the grpc.Server: Cairn's five services, health and reflection.
import * as grpc from "@grpc/grpc-js";
import {
  JobServiceService,
  KeyValueServiceService,
  ResolutionServiceService,
  SessionServiceService,
  TraceEventServiceService,
} from "@cairn/client";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { Config } from "./config.js";
import type { Database } from "./db/database.js";
import { bindService, type HandlerDeps, StreamRegistry } from "./grpc/handlers.js";
import { addReflection } from "./grpc/reflection.js";
import type { Logger } from "./logger.js";
import type { NotifyHub } from "./db/notify-hub.js";
import { sessionHandlers } from "./sessions/service.js";
import { SessionStore } from "./sessions/store.js";
import { jobHandlers } from "./jobs/service.js";
import { JobStore } from "./jobs/store.js";
import { keyValueHandlers } from "./keyvalue/service.js";
import { KeyValueStore } from "./keyvalue/store.js";
import { LOCKS, Reaper } from "./reaper.js";
import { resolutionHandlers } from "./resolutions/service.js";
import { ResolutionStore } from "./resolutions/store.js";
import { traceHandlers } from "./traces/service.js";
import { TraceStore } from "./traces/store.js";

/** Services that answer real calls; their health follows the database. */
export const IMPLEMENTED_SERVICES = [
  "cairn.v1.SessionService",
  "cairn.v1.ResolutionService",
  "cairn.v1.TraceEventService",
  "cairn.v1.KeyValueService",
  "cairn.v1.JobService",
];

export interface BuiltServer {
  server: grpc.Server;
  streams: StreamRegistry;
  /** Background loops: TTL purges and retention; job lease rescue. */
  background: Reaper[];
  setServing(serving: boolean): void;
}

export function buildServer(config: Config, db: Database, hub: NotifyHub, log: Logger): BuiltServer {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": config.limits.maxMessageBytes,
    "grpc.max_send_message_length": config.limits.maxMessageBytes,
  });
  const streams = new StreamRegistry();
  const deps: HandlerDeps = { log, streams };

  server.addService(SessionServiceService, bindService(SessionServiceService, sessionHandlers(new SessionStore(db), config.limits), deps));
  const resolutions = new ResolutionStore(db);
  server.addService(ResolutionServiceService, bindService(ResolutionServiceService, resolutionHandlers(resolutions, config.limits), deps));
  const keyValue = new KeyValueStore(db);
  server.addService(
    KeyValueServiceService,
    bindService(
      KeyValueServiceService,
      keyValueHandlers(keyValue, { limits: config.limits, hub, progressIntervalMs: config.progressIntervalMs }),
      deps,
    ),
  );
  server.addService(
    TraceEventServiceService,
    bindService(
      TraceEventServiceService,
      traceHandlers(new TraceStore(db), { limits: config.limits, hub, progressIntervalMs: config.progressIntervalMs }),
      deps,
    ),
  );
  const jobs = new JobStore(db);
  server.addService(JobServiceService, bindService(JobServiceService, jobHandlers(jobs, { limits: config.limits, hub }), deps));

  const health = new HealthImplementation({ "": "NOT_SERVING" });
  health.addToServer(server);
  const setServing = (serving: boolean) => {
    const status: ServingStatus = serving ? "SERVING" : "NOT_SERVING";
    for (const name of ["", ...IMPLEMENTED_SERVICES]) health.setStatus(name, status);
  };
  setServing(false);

  // Everything the server serves, for reflection's list_services.
  const listed = [
    "cairn.v1.SessionService",
    "cairn.v1.ResolutionService",
    "cairn.v1.TraceEventService",
    "cairn.v1.KeyValueService",
    "cairn.v1.JobService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
  ];
  addReflection(server, () => listed);
  const reaper = new Reaper(
    db.pool,
    [
      { name: "expired resolutions", run: () => resolutions.purgeExpired({}) },
      { name: "expired entries", run: () => keyValue.purgeExpired({}) },
      { name: "key-value change log", run: () => keyValue.compactChanges({}, config.watchRetentionMs) },
      { name: "finished jobs", run: () => jobs.deleteFinished({}, config.jobRetentionMs) },
    ],
    config.reaperIntervalMs,
    log,
  );
  const rescue = new Reaper(
    db.pool,
    [{ name: "expired job leases", run: () => jobs.rescueExpiredLeases({}) }],
    config.leaseRescueIntervalMs,
    log,
    LOCKS.leaseRescue,
  );
  return { server, streams, background: [reaper, rescue], setServing };
}
