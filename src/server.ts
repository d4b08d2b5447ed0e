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

/** The full name of the service a ts-proto definition describes ("cairn.v1.SessionService"). */
function serviceName(definition: Record<string, { path: string }>): string {
  return Object.values(definition)[0]!.path.split("/")[1]!;
}

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

  /** Cairn's own services, by full name: their health follows the database. */
  const cairnServices: string[] = [];
  const serve = <S extends Parameters<typeof bindService>[0]>(definition: S, handlers: Parameters<typeof bindService<S>>[1]) => {
    server.addService(definition as unknown as grpc.ServiceDefinition, bindService(definition, handlers, deps));
    cairnServices.push(serviceName(definition));
  };
  const streaming = { limits: config.limits, hub, progressIntervalMs: config.progressIntervalMs };
  const resolutions = new ResolutionStore(db);
  const keyValue = new KeyValueStore(db);
  const jobs = new JobStore(db);
  serve(SessionServiceService, sessionHandlers(new SessionStore(db), config.limits));
  serve(ResolutionServiceService, resolutionHandlers(resolutions, config.limits));
  serve(TraceEventServiceService, traceHandlers(new TraceStore(db), streaming));
  serve(KeyValueServiceService, keyValueHandlers(keyValue, streaming));
  serve(JobServiceService, jobHandlers(jobs, { limits: config.limits, hub }));

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
