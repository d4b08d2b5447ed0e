// The outbox of a stream: bounded by its own unsent bytes and, past the
// replica's stream memory, by its own last write; SLOW_CONSUMER when nothing
// drains in time. Driven by a fake call whose writes flush when told to.
import { expect, it } from "vitest";
import { CairnError } from "../../src/errors.js";
import { Outbox, StreamMemory } from "../../src/grpc/streams.js";

function fakeCall() {
  const callbacks: (() => void)[] = [];
  return {
    call: { write: (_bytes: Buffer, done: () => void) => callbacks.push(done) } as never,
    /** Flushes the oldest pending write. */
    flushOne: () => callbacks.shift()?.(),
    pending: () => callbacks.length,
  };
}

const limits = (bufferBytes: number, memoryBytes: number, slowConsumerTimeoutMs = 60_000) => ({
  maxStreams: 10,
  maxStreamsPerPrincipal: 10,
  bufferBytes,
  slowConsumerTimeoutMs,
  memoryBytes,
});
const bytes = (n: number) => (() => Buffer.alloc(n)) as (m: unknown) => Buffer;
const settled = async (p: Promise<unknown>) => {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

it("a send waits while the stream holds more than its bound, and goes on when the client drains", async () => {
  const f = fakeCall();
  const outbox = new Outbox(f.call, bytes(400), limits(1000, 1 << 30), new StreamMemory(1 << 30), 1 << 20);
  const signal = new AbortController().signal;
  await outbox.send({}, signal);
  await outbox.send({}, signal);
  const third = outbox.send({}, signal);
  expect(await settled(third)).toBe(false);
  expect(outbox.room()).toBe(0);
  f.flushOne();
  await third;
  expect(outbox.room()).toBe(1000 - 800);
});

it("past the replica's stream memory, a stream writes only once its own last write is flushed", async () => {
  const memory = new StreamMemory(500);
  const reader = fakeCall();
  const stuck = fakeCall();
  const signal = new AbortController().signal;
  const stuckBox = new Outbox(stuck.call, bytes(400), limits(10_000, 500), memory, 1 << 20);
  const readerBox = new Outbox(reader.call, bytes(400), limits(10_000, 500), memory, 1 << 20);
  await stuckBox.send({}, signal);
  // Memory is now at 400 of 500: the next write of the stuck stream takes it over the cap and waits.
  const second = stuckBox.send({}, signal);
  expect(await settled(second)).toBe(false);
  // A reader with nothing unsent may still write one message at a time.
  const read = readerBox.send({}, signal);
  expect(await settled(read)).toBe(false);
  reader.flushOne();
  await read;
  expect(readerBox.room()).toBeGreaterThan(0);
  stuck.flushOne();
  await second;
});

it("a client that drains nothing for the timeout ends SLOW_CONSUMER with the first unflushed resume point", async () => {
  const f = fakeCall();
  const outbox = new Outbox(f.call, bytes(600), limits(1000, 1 << 30, 50), new StreamMemory(1 << 30), 1 << 20);
  const signal = new AbortController().signal;
  await outbox.send({}, signal, { resume_offset: "7" });
  const error = await outbox.send({}, signal, { resume_offset: "8" }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(CairnError);
  expect(error).toMatchObject({ reason: "SLOW_CONSUMER", metadata: { resume_offset: "7" } });
});

it("a stream that ends with unflushed writes gives their bytes back to the replica's count, once", async () => {
  const memory = new StreamMemory(1 << 30);
  const f = fakeCall();
  const outbox = new Outbox(f.call, bytes(400), limits(10_000, 1 << 30), memory, 1 << 20);
  const signal = new AbortController().signal;
  await outbox.send({}, signal);
  await outbox.send({}, signal);
  expect(memory.used).toBe(800);
  outbox.close();
  expect(memory.used).toBe(0);
  // A write callback that still comes late does not count twice.
  f.flushOne();
  expect(memory.used).toBe(0);
});
