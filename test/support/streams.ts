// Helpers for server-streaming calls in tests.
import type { ClientReadableStream } from "@grpc/grpc-js";
import { waitFor } from "./wait.js";

/** Buffers a stream's messages; `until` waits for a condition on them. */
export function collect<T>(stream: ClientReadableStream<T>) {
  const messages: T[] = [];
  let error: (Error & { code?: number }) | undefined;
  let ended = false;
  stream.on("data", (m: T) => messages.push(m));
  stream.on("error", (e) => (error = e));
  stream.on("end", () => (ended = true));
  return {
    messages,
    get error() {
      return error;
    },
    get ended() {
      return ended;
    },
    async until(what: string, check: (messages: T[]) => boolean, timeoutMs = 15_000) {
      await waitFor(what, () => {
        if (error && error.code !== 1) throw error;
        return check(messages);
      }, timeoutMs);
    },
    cancel() {
      stream.cancel();
    },
  };
}
