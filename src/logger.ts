import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { service: "cairn" } }, destination ?? pino.destination({ dest: 1, sync: false }));
}
