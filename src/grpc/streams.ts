// Stream governance, in one place for every streaming method of Cairn's
// services (SubscribeEvents, Watch, StreamJobs, IngestEvents):
// - the registry counts open streams per replica and per principal and
//   refuses a new one past either bound (TOO_MANY_STREAMS); shutdown ends
//   them all;
// - each stream's outbox bounds its unsent bytes: a send waits while more
//   than CAIRN_STREAM_BUFFER_BYTES are written but not yet flushed (so the
//   caller reads no more rows); and while all streams together hold more
//   than CAIRN_STREAM_MEMORY_BYTES, a stream writes only once its own last
//   write is flushed, so readers keep flowing one message at a time while
//   non-readers hold at most one message each; a client that drains nothing for
//   CAIRN_SLOW_CONSUMER_TIMEOUT_MS ends with SLOW_CONSUMER naming where to
//   resume; one that still does not drain is reset after a second period,
//   so its buffers are freed even if it never reads its status.
import * as grpc from "@grpc/grpc-js";
import { constants as http2 } from "node:http2";
import type { StreamLimits } from "../config.js";
import { cancelled, messageTooLarge, slowConsumer, tooManyStreams } from "../errors.js";

export type StreamCall = grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>;

/** Where a client should resume if a message never reaches it (e.g. {resume_offset: "42"}). */
export type ResumePoint = Record<string, string>;

interface OpenStream {
  principal: string;
  kind: string;
  stopWork: () => void;
}

/** Unsent bytes of every stream of the replica together. */
export class StreamMemory {
  used = 0;
  constructor(readonly cap: number) {}
}

export class StreamRegistry {
  private readonly open = new Map<StreamCall, OpenStream>();
  private readonly perPrincipal = new Map<string, number>();
  readonly memory: StreamMemory;

  constructor(private readonly limits: StreamLimits) {
    this.memory = new StreamMemory(limits.memoryBytes);
  }

  /** Registers a stream, or throws TOO_MANY_STREAMS; returns its remover. */
  add(call: StreamCall, stream: OpenStream): () => void {
    const ofPrincipal = this.perPrincipal.get(stream.principal) ?? 0;
    if (this.open.size >= this.limits.maxStreams) throw tooManyStreams("replica", this.limits.maxStreams);
    if (ofPrincipal >= this.limits.maxStreamsPerPrincipal) throw tooManyStreams("principal", this.limits.maxStreamsPerPrincipal);
    this.open.set(call, stream);
    this.perPrincipal.set(stream.principal, ofPrincipal + 1);
    return () => {
      if (!this.open.delete(call)) return;
      const left = (this.perPrincipal.get(stream.principal) ?? 1) - 1;
      if (left > 0) this.perPrincipal.set(stream.principal, left);
      else this.perPrincipal.delete(stream.principal);
    };
  }

  /** Open streams by kind (the method name). */
  countsByKind(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const { kind } of this.open.values()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
    return counts;
  }

  endAll(message: string): void {
    for (const [call, { stopWork }] of this.open) {
      stopWork();
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: message, metadata: new grpc.Metadata() });
    }
    this.open.clear();
    this.perPrincipal.clear();
  }
}

interface Unflushed {
  bytes: number;
  resume: ResumePoint | undefined;
}

/** One stream's writes: serialized here (so their size is known), bounded by unsent bytes. */
export class Outbox {
  private unsentBytes = 0;
  private readonly unflushed: Unflushed[] = [];
  /** When the buffer last went over the bound without a flush since. */
  private fullSince: number | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly call: StreamCall,
    private readonly serialize: (message: unknown) => Buffer,
    private readonly limits: StreamLimits,
    private readonly memory: StreamMemory,
    private readonly maxMessageBytes: number,
  ) {}

  /**
   * How many bytes the caller may read for this stream now: what is left of
   * its bound (0 while it must wait). A reader sizes its next page by it,
   * so rows are not held in memory while the client is not draining.
   */
  room(): number {
    return this.mustWait() ? 0 : Math.max(0, this.limits.bufferBytes - this.unsentBytes);
  }

  private mustWait(): boolean {
    return this.unsentBytes > this.limits.bufferBytes || (this.unsentBytes > 0 && this.memory.used > this.memory.cap);
  }

  /** Resolves once the stream may be written again (see room); SLOW_CONSUMER past the timeout. */
  ready(signal: AbortSignal): Promise<void> {
    return this.whileFull(signal);
  }

  async send(message: unknown, signal: AbortSignal, resume?: ResumePoint): Promise<void> {
    if (signal.aborted) throw cancelled();
    // A message encoded once for many streams (a fanned-out event) comes as bytes.
    const bytes = Buffer.isBuffer(message) ? message : this.serialize(message);
    if (bytes.length > this.maxMessageBytes) throw messageTooLarge(bytes.length, this.maxMessageBytes);
    const entry: Unflushed = { bytes: bytes.length, resume };
    this.unflushed.push(entry);
    this.unsentBytes += entry.bytes;
    this.memory.used += entry.bytes;
    this.call.write(bytes, () => this.flushed(entry));
    await this.whileFull(signal);
  }

  private flushed(entry: Unflushed): void {
    const at = this.unflushed.indexOf(entry);
    // Already given back by close(): a late callback must not count twice.
    if (at < 0) return;
    this.unflushed.splice(at, 1);
    this.unsentBytes -= entry.bytes;
    this.memory.used -= entry.bytes;
    this.fullSince = undefined;
    this.wake?.();
  }

  /**
   * The stream is over (ended, failed, cancelled, reset): what it had not
   * flushed will never flush (grpc-js drops the write callbacks of a
   * cancelled call), so its bytes go back to the replica's count now.
   */
  close(): void {
    this.memory.used -= this.unsentBytes;
    this.unsentBytes = 0;
    this.unflushed.length = 0;
    this.wake?.();
  }

  /** Waits while more than the bound is unsent; SLOW_CONSUMER when nothing drains for the timeout. */
  private async whileFull(signal: AbortSignal): Promise<void> {
    const { slowConsumerTimeoutMs } = this.limits;
    while (this.mustWait()) {
      this.fullSince ??= Date.now();
      const left = this.fullSince + slowConsumerTimeoutMs - Date.now();
      if (left <= 0) {
        this.resetLater(slowConsumerTimeoutMs);
        throw slowConsumer(slowConsumerTimeoutMs, this.unflushed[0]?.resume ?? {});
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, left);
        signal.addEventListener("abort", done, { once: true });
        this.wake = done;
      });
      if (signal.aborted) throw cancelled();
    }
  }

  /** A client that does not drain even its status within another period is reset. */
  private resetLater(afterMs: number): void {
    const timer = setTimeout(() => {
      if (this.unsentBytes > 0) resetStream(this.call);
    }, afterMs);
    timer.unref();
  }
}

/**
 * Resets the HTTP/2 stream under a grpc-js call (RST_STREAM CANCEL). grpc-js
 * offers servers no public way to reset one stream, so this walks to the
 * http2 stream its call objects wrap; if grpc-js changes shape, nothing is
 * reset and the stream's buffers live until the connection closes (still
 * bounded by the outbox).
 */
function resetStream(call: StreamCall): void {
  let layer: any = (call as unknown as { call?: unknown }).call;
  for (let depth = 0; layer && depth < 8; depth++) {
    const stream = layer.stream;
    if (stream && typeof stream.close === "function" && !stream.destroyed) {
      stream.close(http2.NGHTTP2_CANCEL);
      return;
    }
    layer = layer.nextCall;
  }
}

/** The outbox of each live stream, found by its call. */
const outboxes = new WeakMap<object, Outbox>();

export function attachOutbox(call: StreamCall, outbox: Outbox): void {
  outboxes.set(call, outbox);
}

/** The outbox of a stream bound by bindService. */
export function outboxOf(call: object): Outbox {
  const outbox = outboxes.get(call);
  if (!outbox) throw new Error("a stream without an outbox (not bound by bindService?)");
  return outbox;
}

/** Waits until a stream may be written again, then how many bytes it may take (for sizing reads). */
export async function streamRoom(call: object, signal: AbortSignal): Promise<number> {
  const outbox = outboxOf(call);
  await outbox.ready(signal);
  return outbox.room();
}

/**
 * Sends one message on a server stream within its byte bound (see Outbox);
 * `resume` is where the client should pick up if this message is the first
 * it may not have received.
 */
export function writeMessage<T>(call: { write(message: T): boolean }, message: T | Buffer, signal: AbortSignal, resume?: ResumePoint): Promise<void> {
  return outboxOf(call).send(message, signal, resume);
}
