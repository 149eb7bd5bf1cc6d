/**
 * The ingest benchmark: messages/s into committed tasks, four ways, in one run.
 * `npm run bench:ingest` (see docs/benchmarks.md, "Ingest").
 *
 * `--messages` no-op task messages (default 50,000) are produced with kafkajs onto
 * the Kafka test broker (test/support/kafka, in a process of its own:
 * bench/ingestBroker.ts), topic `tasks` with 6 partitions, round robin; headers
 * `task-id` (a fresh UUID each) and `task-type: noop`, value `{"n":i}`. Then, each
 * on a fresh migrated database (`bench_ingest_*`, dropped at the end):
 *
 *   batched  the real ingress (src/ingress/kafka/KafkaIngress.ts `layer`, the
 *            default settings: 3 partitions at once) over `Taskfiber.services` and
 *            `Database.layerUrl` (pool 10), no supervisor; from the ingress layer's
 *            start (connect, join, first fetch included) until the runtime event
 *            hub's `IngressBatchCommitted` events sum to every message;
 *   naive    a kafkajs consumer with `eachMessage` (3 partitions at once, as the
 *            ingress): per message one transaction (`Tasks.enqueueByName`, the
 *            task id from the header), then that message's offset committed; from
 *            `consumer.run` until `--naive` messages (default all) were committed
 *            so (a smaller count gives a rate all the same, and says so);
 *   bulk     no Kafka: the same messages' requests (`Tasks.requestByName`, built
 *            before the clock starts; the time that took is reported beside) through
 *            `TaskStore.enqueueMany`, `--chunk` (default 1,000) per call, one call
 *            at a time;
 *   relay    the status outbox relay (src/outbox/OutboxRelay.ts): outbox on, the
 *            same requests enqueued (each writes its `queued` event), then from
 *            `OutboxRelay.layer("task-status", producer)`'s start until the hub's
 *            `RelayPublished` events sum to every event.
 *
 * Each run checks the database holds what it should. Reported: one table
 * (messages, seconds, msgs/s, ratio to batched and to bulk), the targets
 * (batched ≥ 10× naive, batched ≥ 0.7× bulk), and the batched run's batch sizes;
 * written to bench/results/<date>-<commit>-ingest.json (`--label` names the commit
 * when the tree is not the commit's; `--no-save` writes nothing).
 *
 *   node bench/ingest.ts [--messages 50000] [--naive 50000] [--chunk 1000]
 *     [--partitions-concurrently 3] [--pool 10] [--label x] [--no-save]
 *     [--only batched,bulk]   (a look at some systems: the ratios need batched and bulk; writes nothing)
 */
import { execFileSync, fork } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import os from "node:os"
import { parseArgs } from "node:util"
import { Effect, Exit, Layer, ManagedRuntime, Option, References, Redacted, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { Kafka, logLevel } from "kafkajs"
import pg from "pg"
import * as KafkaIngress from "../src/ingress/kafka/KafkaIngress.ts"
import type { KafkaConfig } from "../src/ingress/kafka/KafkaConfig.ts"
import { RuntimeEvents } from "../src/observability/RuntimeEvents.ts"
import * as OutboxRelay from "../src/outbox/OutboxRelay.ts"
import type { EnqueueRequest } from "../src/domain/Task.ts"
import * as Job from "../src/runtime/Job.ts"
import { JobRegistry } from "../src/runtime/JobRegistry.ts"
import * as Tasks from "../src/runtime/Tasks.ts"
import * as Database from "../src/store/Database.ts"
import { newTaskId } from "../src/store/TaskId.ts"
import { TaskStore } from "../src/store/TaskStore.ts"
import * as Taskfiber from "../src/Taskfiber.ts"
import { round } from "./stats.ts"
import { dropDatabase, recreateDatabase } from "./systems/pgAdmin.ts"
import { now } from "./systems/System.ts"

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "50000" },
    naive: { type: "string" },
    chunk: { type: "string", default: "1000" },
    "partitions-concurrently": { type: "string", default: "3" },
    pool: { type: "string", default: "10" },
    only: { type: "string" },
    label: { type: "string" },
    "no-save": { type: "boolean", default: false }
  }
})
const total = Number(args.messages)
const naiveCount = Math.min(total, Number(args.naive ?? total))
const only = args.only?.split(",").map((s) => s.trim())
const wanted = (name: string) => only === undefined || only.includes(name)
const chunk = Number(args.chunk)
const partitionsConcurrently = Number(args["partitions-concurrently"])
const poolMax = Number(args.pool)
const partitions = 6
const topic = "tasks"
const statusTopic = "task-status"
const server = process.env.BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/postgres"

const log = (line: string) => process.stderr.write(`${line}\n`)

const Noop = Job.define({ name: "noop", payload: Schema.Struct({ n: Schema.Number }), run: () => Effect.void })

const quiet = Layer.succeed(References.MinimumLogLevel, "Warn")

const urlOf = (name: string) => {
  const url = new URL(server)
  url.pathname = `/bench_ingest_${name}`
  return url.toString()
}

/** The runtime's services over a fresh migrated database `bench_ingest_<name>`. */
const servicesOn = async (name: string) => {
  const url = urlOf(name)
  await recreateDatabase(url)
  const runtime = ManagedRuntime.make(
    Taskfiber.services([Noop]).pipe(
      Layer.provideMerge(Database.layerUrl(Redacted.make(url), { poolMax, applicationName: "taskfiber-bench-ingest" })),
      Layer.provide(quiet)
    )
  )
  // Connected, migrated and warmed before any clock starts.
  await runtime.runPromise(Effect.void)
  return runtime
}
type Services = Awaited<ReturnType<typeof servicesOn>>

const countTasks = (runtime: Services) =>
  runtime.runPromise(Effect.flatMap(SqlClient, (sql) =>
    Effect.map(sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks`, (rows) => rows[0]!.n)
  ))

const expectTasks = async (runtime: Services, what: string, expected: number) => {
  const n = await countTasks(runtime)
  if (n !== expected) throw new Error(`${what}: ${n} tasks in the database, expected ${expected}`)
}

// --- the broker, in its own process --------------------------------------------

const startBroker = async () => {
  const child = fork(new URL("./ingestBroker.ts", import.meta.url), [`${topic}:${partitions}`, `${statusTopic}:${partitions}`], {
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m) => resolve((m as { port: number }).port))
    child.once("exit", (code) => reject(new Error(`the broker exited with ${code}`)))
  })
  const cpuMs = () =>
    new Promise<number>((resolve) => {
      child.once("message", (m) => resolve((m as { cpuMs: number }).cpuMs))
      child.send({ kind: "cpu" })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      child.once("exit", () => resolve())
      child.disconnect()
    })
  return { brokers: [`127.0.0.1:${port}`], cpuMs, stop }
}
type Broker = Awaited<ReturnType<typeof startBroker>>

const kafka = (broker: Broker, clientId: string) => new Kafka({ clientId, brokers: broker.brokers, logLevel: logLevel.NOTHING })

interface Message {
  readonly id: string
  readonly n: number
}

const produce = async (broker: Broker, messages: ReadonlyArray<Message>) => {
  const producer = kafka(broker, "bench-producer").producer()
  await producer.connect()
  const t0 = now()
  for (let i = 0; i < messages.length; i += 1000) {
    await producer.send({
      topic,
      acks: -1,
      messages: messages.slice(i, i + 1000).map((m) => ({
        partition: m.n % partitions,
        headers: { "task-id": m.id, "task-type": Noop.name },
        value: JSON.stringify({ n: m.n })
      }))
    })
  }
  const ms = now() - t0
  await producer.disconnect()
  return ms
}

// --- what each system measures -------------------------------------------------

interface Measured {
  readonly messages: number
  readonly ms: number
  readonly cpuMs: number
  readonly brokerCpuMs: number
  readonly detail?: Record<string, unknown>
}

/** Runs `f` with the clock and both processes' CPU around it. */
const measure = async (broker: Broker, f: () => Promise<{ readonly messages: number; readonly ms: number; readonly detail?: Record<string, unknown> }>): Promise<Measured> => {
  const b0 = await broker.cpuMs()
  const c0 = process.cpuUsage()
  const r = await f()
  const c = process.cpuUsage(c0)
  const b1 = await broker.cpuMs()
  return { ...r, cpuMs: (c.user + c.system) / 1000, brokerCpuMs: b1 - b0 }
}

const ingressConfig = (broker: Broker, groupId: string): KafkaConfig => ({
  brokers: broker.brokers,
  clientId: "taskfiber-bench",
  topics: [topic],
  groupId,
  statusTopic: Option.none(),
  partitionsConcurrently,
  maxMessageBytes: 1024 * 1024,
  memberTimeoutMs: 30_000,
  ssl: false,
  sasl: Option.none()
})

const batched = async (broker: Broker) => {
  const runtime = await servicesOn("batched")
  try {
    const result = await measure(broker, () =>
      runtime.runPromise(Effect.scoped(Effect.gen(function*() {
        const events = yield* RuntimeEvents
        const sizes: Array<number> = []
        let committed = 0
        let firstAt = 0
        let finish!: () => void
        const finished = new Promise<void>((resolve) => (finish = resolve))
        yield* events.subscribe(["IngressBatchCommitted"], (e) => {
          if (e._tag !== "IngressBatchCommitted") return
          if (sizes.length === 0) firstAt = now()
          sizes.push(e.messages)
          committed += e.messages
          if (committed >= total) finish()
        })
        const scope = yield* Scope.make()
        const t0 = now()
        yield* Layer.buildWithScope(KafkaIngress.layer(ingressConfig(broker, "bench-batched")), scope)
        const startedAt = now()
        yield* Effect.promise(() => finished)
        const ms = now() - t0
        yield* Scope.close(scope, Exit.void)
        const sorted = [...sizes].sort((a, b) => a - b)
        return {
          messages: committed,
          ms,
          detail: {
            layerStartMs: round(startedAt - t0, 1),
            firstCommitMs: round(firstAt - t0, 1),
            batches: sizes.length,
            batchSize: { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] }
          }
        }
      }).pipe(Effect.provide(quiet))))
    )
    await expectTasks(runtime, "batched", total)
    return result
  } finally {
    await runtime.dispose()
  }
}

const naive = async (broker: Broker) => {
  const runtime = await servicesOn("naive")
  try {
    const registry = await runtime.runPromise(Effect.gen(function*() {
      return yield* JobRegistry
    }))
    const consumer = kafka(broker, "bench-naive").consumer({ groupId: "bench-naive", sessionTimeout: 30_000, heartbeatInterval: 3000 })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    let done = 0
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    const result = await measure(broker, async () => {
      const t0 = now()
      await consumer.run({
        autoCommit: false,
        partitionsConsumedConcurrently: partitionsConcurrently,
        eachMessage: async ({ topic, partition, message }) => {
          if (done >= naiveCount) return
          const headers = message.headers ?? {}
          await runtime.runPromise(
            Tasks.enqueueByName(registry, String(headers["task-type"]), JSON.parse(String(message.value)), { id: String(headers["task-id"]) })
          )
          await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }])
          if (++done === naiveCount) finish()
        }
      })
      await finished
      return { messages: naiveCount, ms: now() - t0 }
    })
    await consumer.disconnect()
    // Handlers already past the check when the count was reached may add a few.
    const n = await countTasks(runtime)
    if (n < naiveCount) throw new Error(`naive: ${n} tasks in the database, expected at least ${naiveCount}`)
    return result
  } finally {
    await runtime.dispose()
  }
}

const requestsOf = (runtime: Services, messages: ReadonlyArray<Message>) =>
  runtime.runPromise(Effect.gen(function*() {
    const registry = yield* JobRegistry
    return yield* Effect.forEach(messages, (m) => Tasks.requestByName(registry, Noop.name, { n: m.n }, { id: m.id }))
  }))

const enqueueInChunks = (runtime: Services, requests: ReadonlyArray<EnqueueRequest.Encoded>) =>
  runtime.runPromise(Effect.gen(function*() {
    const store = yield* TaskStore
    for (let i = 0; i < requests.length; i += chunk) yield* store.enqueueMany(requests.slice(i, i + chunk))
  }))

const bulk = async (broker: Broker, messages: ReadonlyArray<Message>) => {
  const runtime = await servicesOn("bulk")
  try {
    // Not timed, but told: the per-message check the ingress's figure includes.
    const r0 = now()
    const requests = await requestsOf(runtime, messages)
    const requestsMs = now() - r0
    const result = await measure(broker, async () => {
      const t0 = now()
      await enqueueInChunks(runtime, requests)
      return { messages: requests.length, ms: now() - t0, detail: { requestsBuiltMs: round(requestsMs, 1) } }
    })
    await expectTasks(runtime, "bulk", total)
    return result
  } finally {
    await runtime.dispose()
  }
}

const relay = async (broker: Broker, messages: ReadonlyArray<Message>) => {
  const runtime = await servicesOn("relay")
  const producer = kafka(broker, "bench-relay").producer()
  await producer.connect()
  try {
    await runtime.runPromise(Effect.flatMap(SqlClient, (sql) => sql`update taskfiber.settings set outbox_topic = ${statusTopic}`))
    await enqueueInChunks(runtime, await requestsOf(runtime, messages))
    const pending = await runtime.runPromise(Effect.flatMap(SqlClient, (sql) =>
      Effect.map(sql<{ n: number }>`select count(*)::int as n from taskfiber.outbox where published_at is null`, (rows) => rows[0]!.n)
    ))
    if (pending !== total) throw new Error(`relay: ${pending} unpublished events, expected ${total}`)
    return await measure(broker, () =>
      runtime.runPromise(Effect.scoped(Effect.gen(function*() {
        const events = yield* RuntimeEvents
        let published = 0
        let rounds = 0
        let finish!: () => void
        const finished = new Promise<void>((resolve) => (finish = resolve))
        yield* events.subscribe(["RelayPublished"], (e) => {
          if (e._tag !== "RelayPublished") return
          rounds++
          published += e.count
          if (published >= total) finish()
        })
        const scope = yield* Scope.make()
        const t0 = now()
        yield* Layer.buildWithScope(OutboxRelay.layer(statusTopic, producer), scope)
        yield* Effect.promise(() => finished)
        const ms = now() - t0
        yield* Scope.close(scope, Exit.void)
        return { messages: published, ms, detail: { rounds } }
      })))
    )
  } finally {
    await producer.disconnect()
    await runtime.dispose()
  }
}

// --- the run -------------------------------------------------------------------

const machine = async (): Promise<string> => {
  const client = new pg.Client({ connectionString: server })
  await client.connect()
  const version = (await client.query<{ server_version: string }>("show server_version")).rows[0]!.server_version
  await client.end()
  const cpu = os.cpus()
  return `${cpu[0]?.model.trim() ?? "cpu"} × ${cpu.length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
    `Linux ${os.release()}, Node ${process.versions.node}, PostgreSQL ${version}, the Kafka test broker (all on loopback)`
}

const main = async () => {
  const machineLine = await machine()
  log(`machine: ${machineLine}`)
  const broker = await startBroker()
  const measured: Record<string, Measured> = {}
  try {
    const messages: Array<Message> = Array.from({ length: total }, (_, n) => ({ id: newTaskId(), n }))
    const produceMs = await produce(broker, messages)
    log(`produced ${total} messages onto ${partitions} partitions in ${(produceMs / 1000).toFixed(2)} s`)
    if (wanted("batched")) {
      log("batched: the Kafka ingress")
      measured.batched = await batched(broker)
    }
    if (wanted("naive")) {
      log(`naive: eachMessage, one transaction and one offset commit per message (${naiveCount} messages)`)
      measured.naive = await naive(broker)
    }
    if (wanted("bulk")) {
      log("bulk: TaskStore.enqueueMany, no Kafka")
      measured.bulk = await bulk(broker, messages)
    }
    if (wanted("relay")) {
      log("relay: the status outbox relay")
      measured.relay = await relay(broker, messages)
    }
  } finally {
    await broker.stop()
    for (const name of ["batched", "naive", "bulk", "relay"]) await dropDatabase(urlOf(name))
  }

  const rate = (m: Measured | undefined) => (m === undefined ? NaN : (m.messages / m.ms) * 1000)
  const batchedRate = rate(measured.batched)
  const bulkRate = rate(measured.bulk)
  const naiveRate = rate(measured.naive)
  const labels: Record<string, string> = {
    batched: "batched (Kafka ingress)",
    naive: "naive (eachMessage, 1 tx/message)",
    bulk: "bulk (enqueueMany, no Kafka)",
    relay: "relay (status events)"
  }
  const header = ["system", "messages", "seconds", "msgs/s", "÷ batched", "÷ bulk"]
  const rows = Object.entries(measured).map(([name, m]) => [
    labels[name]!,
    String(m.messages),
    (m.ms / 1000).toFixed(2),
    rate(m).toFixed(0),
    `${(rate(m) / batchedRate).toFixed(2)}×`,
    `${(rate(m) / bulkRate).toFixed(2)}×`
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: Array<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log(`\ningest: ${total} no-op task messages, ${partitions} partitions, ${partitionsConcurrently} partitions at once, pool ${poolMax}` +
    (naiveCount < total ? `; naive measured on its first ${naiveCount} messages (a rate all the same)` : ""))
  console.log(line(header))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const row of rows) console.log(line(row))
  const vsNaive = batchedRate / naiveRate
  const vsBulk = batchedRate / bulkRate
  const targets = {
    batchedVsNaive: { ratio: round(vsNaive, 2), target: 10, met: vsNaive >= 10 },
    batchedVsBulk: { ratio: round(vsBulk, 2), target: 0.7, met: vsBulk >= 0.7 }
  }
  console.log(`\ntarget batched ≥ 10× naive:  ${vsNaive.toFixed(1)}× (${batchedRate.toFixed(0)} vs ${naiveRate.toFixed(0)} msgs/s): ${targets.batchedVsNaive.met ? "met" : "NOT MET"}`)
  console.log(`target batched ≥ 0.7× bulk:  ${vsBulk.toFixed(2)}× (${batchedRate.toFixed(0)} vs ${bulkRate.toFixed(0)} msgs/s): ${targets.batchedVsBulk.met ? "met" : "NOT MET"}`)
  const d = measured.batched?.detail ?? {}
  console.log(`batched: layer started in ${d.layerStartMs} ms, first batch committed at ${d.firstCommitMs} ms; ${d.batches} batches, ` +
    `sizes ${JSON.stringify(d.batchSize)}`)
  if (measured.bulk?.detail !== undefined) console.log(`bulk: building the ${total} requests (Tasks.requestByName, untimed) took ${measured.bulk.detail.requestsBuiltMs} ms`)
  console.log(`CPU ms (this process / broker): ${Object.entries(measured).map(([n, m]) => `${n} ${m.cpuMs.toFixed(0)} / ${m.brokerCpuMs.toFixed(0)}`).join(", ")}`)
  console.log(`\nmachine: ${machineLine}`)

  const date = new Date().toISOString()
  const document = {
    machine: machineLine,
    date,
    workload: { messages: total, naiveMessages: naiveCount, partitions, partitionsConcurrently, chunk, poolMax },
    systems: Object.fromEntries(Object.entries(measured).map(([name, m]) => [name, {
      messages: m.messages,
      seconds: round(m.ms / 1000, 3),
      messagesPerSec: round(rate(m)),
      ratioToBatched: round(rate(m) / batchedRate, 3),
      ratioToBulk: round(rate(m) / bulkRate, 3),
      cpuMs: round(m.cpuMs),
      brokerCpuMs: round(m.brokerCpuMs),
      ...(m.detail === undefined ? {} : { detail: m.detail })
    }])),
    targets
  }
  if (!args["no-save"] && only === undefined) {
    const dir = new URL("./results/", import.meta.url)
    mkdirSync(dir, { recursive: true })
    const commit = args.label ?? execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
    const file = `${date.slice(0, 10)}-${commit}-ingest.json`
    writeFileSync(new URL(file, dir), `${JSON.stringify(document, null, 2)}\n`)
    log(`written: bench/results/${file}`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
