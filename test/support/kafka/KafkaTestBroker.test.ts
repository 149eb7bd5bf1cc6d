/**
 * The Kafka test broker against the real kafkajs client: round trips, consumer
 * group rebalances (leave and death), committed offsets, a broker restart.
 */
import { connect, type Socket } from "node:net"
import { Effect } from "effect"
import { Kafka, logLevel, type Consumer, type KafkaConfig } from "kafkajs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { KafkaTestBroker } from "./KafkaTestBroker.ts"
import { ApiKey } from "./protocol.ts"
import { crc32c, Reader, Writer } from "./wire.ts"

/** Re-checks a condition whenever something reports progress; fails after a deadline. */
class Progress {
  private waiters = new Set<() => void>()

  notify(): void {
    for (const waiter of [...this.waiters]) waiter()
  }

  until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition()) return
        clearTimeout(timer)
        this.waiters.delete(check)
        resolve()
      }
      const timer = setTimeout(() => {
        this.waiters.delete(check)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
      }, timeoutMs)
      this.waiters.add(check)
      check()
    })
  }
}

const groupTimings = {
  sessionTimeout: 6000,
  heartbeatInterval: 500,
  rebalanceTimeout: 3000,
  maxWaitTimeInMs: 100,
} as const

let broker: KafkaTestBroker

const kafka = (clientId: string, extra: Partial<KafkaConfig> = {}) =>
  new Kafka({
    clientId,
    brokers: broker.brokers,
    logLevel: logLevel.NOTHING,
    retry: { initialRetryTime: 100, retries: 10 },
    ...extra,
  })

beforeAll(async () => {
  broker = await KafkaTestBroker.start({ host: "127.0.0.1" })
})
afterAll(async () => {
  await broker.stop()
})

/** A bare protocol client: requests written by hand, responses framed and handed back in arrival order. */
const rawClient = async () => {
  const socket: Socket = connect(broker.port, "127.0.0.1")
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject))
  const responses: Array<{ correlationId: number; body: Reader }> = []
  const progress = new Progress()
  let pending = Buffer.alloc(0)
  let closed = false
  socket.on("data", (chunk) => {
    pending = Buffer.concat([pending, chunk])
    while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
      const frame = pending.subarray(4, 4 + pending.readInt32BE(0))
      pending = pending.subarray(4 + frame.length)
      const body = new Reader(frame)
      responses.push({ correlationId: body.int32(), body })
      progress.notify()
    }
  })
  socket.on("close", () => {
    closed = true
    progress.notify()
  })
  return {
    responses,
    send: (apiKey: number, apiVersion: number, correlationId: number, body: Writer) => {
      const payload = new Writer().int16(apiKey).int16(apiVersion).int32(correlationId).string("raw").toBuffer()
      const all = Buffer.concat([payload, body.toBuffer()])
      socket.write(Buffer.concat([new Writer().int32(all.length).toBuffer(), all]))
    },
    responsesAtLeast: (count: number) => progress.until(() => responses.length >= count, 5_000, `${count} responses`),
    sendRaw: (bytes: Buffer) => socket.write(bytes),
    closed: () => progress.until(() => closed, 5_000, "the connection to close"),
    end: () => socket.destroy(),
  }
}

/** One record batch v2 with unkeyed values and no headers, CRC-32C filled in. */
const recordBatch = (values: string[]): Buffer => {
  const records = new Writer()
  values.forEach((value, i) => {
    const encoded = Buffer.from(value)
    const record = new Writer().int8(0).varint(0).varint(i).varint(-1).varint(encoded.length).raw(encoded).varint(0)
    records.varint(record.length).raw(record.toBuffer())
  })
  const afterCrc = new Writer()
    .int16(0) // attributes
    .int32(values.length - 1)
    .int64(BigInt(Date.now()))
    .int64(BigInt(Date.now()))
    .int64(-1n) // producer id
    .int16(-1)
    .int32(-1)
    .int32(values.length)
    .raw(records.toBuffer())
    .toBuffer()
  const tail = new Writer().int32(0).int8(2).int32(crc32c(afterCrc) | 0).raw(afterCrc).toBuffer()
  return new Writer().int64(0n).int32(tail.length).raw(tail).toBuffer()
}

const produceRequest = (topic: string, batch: Buffer) =>
  new Writer()
    .string(null)
    .int16(-1)
    .int32(1000)
    .array([topic], (w, t) => w.string(t).array([batch], (pw, b) => pw.int32(0).bytes(b)))

/** The first partition's error code and base offset in a Produce v3 response. */
const produceResult = (body: Reader) => {
  body.int32() // topic count
  body.string()
  body.int32() // partition count
  body.int32() // partition
  return { errorCode: body.int16(), baseOffset: body.int64() }
}

describe("KafkaTestBroker on the wire", () => {
  it("refuses a batch whose CRC-32C does not match with CORRUPT_MESSAGE", async () => {
    broker.createTopic("raw-crc", 1)
    const client = await rawClient()
    const good = recordBatch(["a", "b"])
    const bad = Buffer.from(good)
    bad.writeUInt8(bad.readUInt8(bad.length - 2) ^ 0xff, bad.length - 2) // inside the last record's value
    client.send(ApiKey.Produce, 3, 1, produceRequest("raw-crc", bad))
    client.send(ApiKey.Produce, 3, 2, produceRequest("raw-crc", good))
    client.send(ApiKey.Produce, 3, 3, produceRequest("raw-crc", good))
    await client.responsesAtLeast(3)
    client.end()
    expect(client.responses.map((r) => r.correlationId)).toEqual([1, 2, 3])
    expect(client.responses.map((r) => produceResult(r.body))).toEqual([
      { errorCode: 2, baseOffset: -1n },
      { errorCode: 0, baseOffset: 0n },
      { errorCode: 0, baseOffset: 2n },
    ])
  })

  it("holds an empty fetch until a produce wakes it, and answers later requests after it", async () => {
    broker.createTopic("raw-poll", 1)
    const client = await rawClient()
    const fetchRequest = new Writer()
      .int32(-1)
      .int32(20_000) // max wait: far beyond the test's deadline, so only the produce can end it
      .int32(1)
      .int32(1 << 20)
      .int8(0)
      .array(["raw-poll"], (w, t) => w.string(t).array([0], (pw, p) => pw.int32(p).int64(0n).int32(1 << 20)))
    client.send(ApiKey.Fetch, 4, 10, fetchRequest)
    client.send(ApiKey.Produce, 3, 11, produceRequest("raw-poll", recordBatch(["woken"])))
    await client.responsesAtLeast(2)
    client.end()
    // The held fetch answers first although the produce finished first.
    expect(client.responses.map((r) => r.correlationId)).toEqual([10, 11])
    const fetched = client.responses[0]!.body
    fetched.int32() // throttle
    fetched.int32()
    fetched.string()
    fetched.int32()
    fetched.int32() // partition
    expect(fetched.int16()).toBe(0)
    expect(fetched.int64()).toBe(1n) // high watermark
    fetched.int64()
    fetched.array(() => undefined)
    expect(fetched.bytes()?.length).toBeGreaterThan(61)
  })

  it("scoped: listens while its scope is open, stops with it", async () => {
    const connects = (port: number) =>
      new Promise<boolean>((resolve) => {
        const socket = connect(port, "127.0.0.1")
        socket.once("connect", () => {
          socket.destroy()
          resolve(true)
        })
        socket.once("error", () => resolve(false))
      })
    const port = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const scoped = yield* KafkaTestBroker.scoped({ host: "127.0.0.1" })
          expect(yield* Effect.promise(() => connects(scoped.port))).toBe(true)
          return scoped.port
        }),
      ),
    )
    expect(await connects(port)).toBe(false)
  })

  it("closes the connection on a frame too short for a request header", async () => {
    const client = await rawClient()
    client.sendRaw(Buffer.from([0, 0, 0, 2, 0, 1]))
    await client.closed()
    expect(client.responses).toEqual([])
  })

  it("closes the connection on an API it does not implement", async () => {
    const client = await rawClient()
    client.send(ApiKey.Produce, 7, 1, new Writer()) // a version it does not advertise
    await client.closed()
    expect(client.responses).toEqual([])
  })
})

describe("KafkaTestBroker with kafkajs", () => {
  it("computes CRC-32C (the check value of '123456789')", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283)
  })

  it("round-trips values, keys, headers and offsets with acks -1 and 0", async () => {
    const admin = kafka("admin-1").admin()
    await admin.connect()
    expect(await admin.createTopics({ topics: [{ topic: "roundtrip", numPartitions: 1 }] })).toBe(true)
    expect(await admin.createTopics({ topics: [{ topic: "roundtrip", numPartitions: 1 }] })).toBe(false)
    await admin.disconnect()

    const producer = kafka("producer-1").producer()
    await producer.connect()
    const [acked] = await producer.send({
      topic: "roundtrip",
      acks: -1,
      messages: [
        { key: "k0", value: "v0", headers: { trace: "t0", multi: ["a", "b"] } },
        { key: null, value: "v1" },
        { key: "k2", value: Buffer.from([0, 1, 2, 255]), headers: { empty: "" } },
      ],
    })
    expect(acked?.baseOffset).toBe("0")
    await producer.send({ topic: "roundtrip", acks: 0, messages: [{ key: "k3", value: "v3" }] })
    await producer.send({ topic: "roundtrip", acks: 1, messages: [{ value: "v4", headers: { n: "4" } }] })
    await producer.disconnect()

    const consumer = kafka("consumer-1").consumer({ groupId: "roundtrip-group", ...groupTimings })
    const seen: Array<{ offset: string; key: string | null; value: Buffer | null; headers: Record<string, unknown> }> =
      []
    const progress = new Progress()
    await consumer.connect()
    await consumer.subscribe({ topic: "roundtrip", fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ message }) => {
        seen.push({
          offset: message.offset,
          key: message.key?.toString() ?? null,
          value: message.value,
          headers: Object.fromEntries(
            Object.entries(message.headers ?? {}).map(([k, v]) => [
              k,
              Array.isArray(v) ? v.map(String) : v === undefined ? undefined : String(v),
            ]),
          ),
        })
        progress.notify()
      },
    })
    await progress.until(() => seen.length >= 5, 10_000, "five messages")
    await consumer.disconnect()

    expect(seen.map((m) => m.offset)).toEqual(["0", "1", "2", "3", "4"])
    expect(seen.map((m) => m.key)).toEqual(["k0", null, "k2", "k3", null])
    expect(seen[0]?.value?.toString()).toBe("v0")
    expect(seen[2]?.value).toEqual(Buffer.from([0, 1, 2, 255]))
    expect(seen[3]?.value?.toString()).toBe("v3")
    expect(seen[0]?.headers).toEqual({ trace: "t0", multi: ["a", "b"] })
    expect(seen[1]?.headers).toEqual({})
    expect(seen[2]?.headers).toEqual({ empty: "" })
    expect(seen[4]?.headers).toEqual({ n: "4" })
  })

  it("shares six partitions among three members and rebalances on a leave and a death", async () => {
    const topic = "shared"
    broker.createTopic(topic, 6)
    const assignments = new Map<string, number[]>()
    const received = new Map<string, string[]>()
    const progress = new Progress()
    const consumers = new Map<string, Consumer>()
    for (const id of ["c1", "c2", "c3"]) {
      const consumer = kafka(id).consumer({ groupId: "shared-group", ...groupTimings })
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
        assignments.set(id, [...(payload.memberAssignment[topic] ?? [])].sort())
        progress.notify()
      })
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        eachMessage: async ({ message }) => {
          received.set(id, [...(received.get(id) ?? []), message.value?.toString() ?? ""])
          progress.notify()
        },
      })
      consumers.set(id, consumer)
    }
    /** The members' latest assignments split all six partitions, `sizes` each. */
    const split = (ids: string[], size: number) => () => {
      const owned = ids.flatMap((id) => assignments.get(id) ?? [])
      return (
        ids.every((id) => assignments.get(id)?.length === size) &&
        new Set(owned).size === 6 &&
        owned.length === 6
      )
    }

    await progress.until(split(["c1", "c2", "c3"], 2), 15_000, "two partitions each for c1, c2, c3")

    // A member that leaves (disconnect sends LeaveGroup): the others take its share.
    await consumers.get("c3")!.disconnect()
    await progress.until(split(["c1", "c2"], 3), 10_000, "three partitions each for c1 and c2")

    // A member that dies (no heartbeats, no LeaveGroup) is dropped after its session timeout.
    const thaw = broker.freezeClient("c2")
    await progress.until(split(["c1"], 6), 15_000, "all six partitions for c1")

    const producer = kafka("producer-2").producer()
    await producer.connect()
    await producer.send({
      topic,
      messages: [0, 1, 2, 3, 4, 5].map((partition) => ({ partition, value: `after-death-${partition}` })),
    })
    await producer.disconnect()
    await progress.until(
      () => (received.get("c1") ?? []).filter((v) => v.startsWith("after-death-")).length === 6,
      10_000,
      "c1 to consume from every partition",
    )

    thaw()
    await Promise.all([consumers.get("c1")!.disconnect(), consumers.get("c2")!.disconnect()])
  })

  it("serves a producer again after dropConnections", async () => {
    broker.createTopic("dropped", 1)
    const producer = kafka("producer-4").producer()
    await producer.connect()
    await producer.send({ topic: "dropped", messages: [{ value: "before" }] })
    broker.dropConnections()
    const [result] = await producer.send({ topic: "dropped", messages: [{ value: "after" }] })
    await producer.disconnect()
    expect(result?.baseOffset).toBe("1")
  })

  it("resumes after committed offsets and redelivers what was not committed", async () => {
    const topic = "commits"
    broker.createTopic(topic, 1)
    const producer = kafka("producer-3").producer()
    await producer.connect()
    await producer.send({ topic, messages: Array.from({ length: 10 }, (_, i) => ({ value: `m${i}` })) })
    await producer.disconnect()

    const consume = async (clientId: string, count: number) => {
      const consumer = kafka(clientId).consumer({ groupId: "commits-group", ...groupTimings })
      const offsets: string[] = []
      const progress = new Progress()
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          offsets.push(message.offset)
          progress.notify()
        },
      })
      await progress.until(() => offsets.length >= count, 10_000, `${count} messages for ${clientId}`)
      return { consumer, offsets }
    }

    const first = await consume("committer-1", 10)
    expect(first.offsets).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
    // Processed 0..5: the committed offset is the next one to read.
    await first.consumer.commitOffsets([{ topic, partition: 0, offset: "6" }])
    await first.consumer.disconnect()

    const second = await consume("committer-2", 4)
    await second.consumer.disconnect()
    expect(second.offsets).toEqual(["6", "7", "8", "9"])
  })

  it("keeps a producer and a consumer going across a broker restart, losing no acknowledged message", async () => {
    const topic = "restart"
    broker.createTopic(topic, 2)
    const consumed = new Set<string>()
    const progress = new Progress()
    const consumer = kafka("restart-consumer").consumer({ groupId: "restart-group", ...groupTimings })
    let joins = 0
    consumer.on(consumer.events.GROUP_JOIN, () => {
      joins++
    })
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ message }) => {
        consumed.add(message.value?.toString() ?? "")
        progress.notify()
      },
    })

    const producer = kafka("restart-producer").producer()
    await producer.connect()
    const acknowledged: string[] = []
    let restarted: Promise<void> | undefined
    for (let i = 0; i < 40; i++) {
      const value = `r${i}`
      try {
        await producer.send({ topic, acks: -1, messages: [{ key: String(i), value }] })
        acknowledged.push(value)
      } catch {
        // Not acknowledged: the test only holds the broker to what it acknowledged.
      }
      if (i === 15) {
        await progress.until(() => consumed.size >= 10, 10_000, "ten messages before the restart")
        // Not awaited: the producer's next sends race the restart.
        restarted = broker.restart()
      }
    }
    await restarted
    await producer.disconnect()

    expect(acknowledged.length).toBeGreaterThanOrEqual(30)
    await progress.until(
      () => acknowledged.every((v) => consumed.has(v)),
      20_000,
      "every acknowledged message to be consumed",
    )
    await consumer.disconnect()
    // The restart ended the membership: the consumer had to join again.
    expect(joins).toBeGreaterThanOrEqual(2)
  })
})
