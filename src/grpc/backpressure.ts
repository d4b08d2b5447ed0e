// Writes to a server stream without outrunning the client: when write()
// reports a full buffer, wait for 'drain' (or the call's end) before the next.
import { once } from "node:events";
import { cancelled } from "../errors.js";

/** The part of a grpc-js server stream (writable or duplex) this needs. */
interface WritableCall<T> {
  write(message: T): boolean;
}

export async function writeMessage<T>(call: WritableCall<T>, message: T, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw cancelled();
  if (call.write(message)) return;
  try {
    await once(call as unknown as NodeJS.EventEmitter, "drain", { signal });
  } catch {
    throw cancelled();
  }
}
