/**
 * taskfiber under benchmark, used as an embedding application would: the
 * `Taskfiber.layerWithoutDatabase` runtime over `Database.layerUrl` (warmed when
 * idle, as `Taskfiber.layer` does), one no-op job, `TaskStore.enqueueMany` as the
 * batch API.
 */
import { Effect, Layer, ManagedRuntime, References, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Job from "../../src/runtime/Job.ts"
import * as Database from "../../src/store/Database.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import type { RuntimeConfig } from "../../src/runtime/RuntimeConfig.ts"
import { spawn } from "node:child_process"
import * as Logging from "../../src/observability/Logging.ts"
import * as Telemetry from "../../src/observability/Telemetry.ts"
import { recreateDatabase } from "./pgAdmin.ts"
import type { Payload, System, SystemFactory } from "./System.ts"

const NoopPayload = Schema.Struct({ t: Schema.Number })

const quiet = Layer.succeed(References.MinimumLogLevel, "Warn")

const database = (url: string, poolMax: number, warmUp: "eager" | "when-idle" = "eager") =>
  Database.layerUrl(Redacted.make(url), { poolMax, applicationName: "taskfiber-bench", warmUp }).pipe(Layer.provide(quiet))

// The heap settings the README recommends for worker processes (see "Memory"):
// without them V8 grows the young generation past 130 MB while draining, and lets
// the old generation reach four times the live heap before collecting it.
const workerNodeOptions = ["--max-semi-space-size=16", "--heap-growing-percent=30"]

/**
 * An OTLP/HTTP collector that takes every body and keeps nothing, in a process of
 * its own (its CPU is not the worker's): where the traced worker exports.
 */
const otlpSink = async () => {
  const child = spawn(process.execPath, ["-e", `require("node:http").createServer((q, s) => {
    q.resume(); q.on("end", () => { s.writeHead(200, { "content-type": "application/json" }); s.end("{}") })
  }).listen(0, "127.0.0.1", function() { process.send(this.address().port) })`], { stdio: ["ignore", "ignore", "inherit", "ipc"] })
  const port = await new Promise<number>((resolve) => child.once("message", (m) => resolve(m as number)))
  return { url: `http://127.0.0.1:${port}`, close: () => void child.kill() }
}

/** Spans of every run, claim and statement exported over OTLP (OTEL_ENABLED=true) to `url`. */
const traced = (url: string) =>
  Telemetry.layerWith(
    { enabled: true, endpoint: url, serviceName: "taskfiber-bench", serviceVersion: undefined, resourceAttributes: {} },
    { ...Logging.defaults, level: "Warn" }
  )

const system = (
  name: string,
  settings: string,
  url: string,
  config: (concurrency: number) => Partial<RuntimeConfig>,
  // Tasks enqueued with removeOnComplete: deleted on success, no happy-path history.
  removeOnComplete = false,
  tracing = false
): System => ({
  name,
  settings: `${settings}, node ${workerNodeOptions.join(" ")}`,
  workerNodeOptions,
  reset: async () => {
    await recreateDatabase(url)
    // Building the layer runs the migrations.
    const runtime = ManagedRuntime.make(database(url, 1))
    await runtime.runPromise(Effect.void)
    await runtime.dispose()
  },
  producer: async () => {
    const runtime = ManagedRuntime.make(Taskfiber.services([]).pipe(Layer.provideMerge(database(url, 4)), Layer.provide(quiet)))
    // Connected (and the schema checked) before the first job, as BullMQ's
    // waitUntilReady: a ManagedRuntime builds its layers on first use, which put
    // the connection's start-up into the first job's pickup latency.
    await runtime.runPromise(Effect.void)
    const enqueue = (payloads: ReadonlyArray<Payload>) =>
      runtime.runPromise(Effect.flatMap(TaskStore, (store) =>
        store.enqueueMany(payloads.map((payload) => (removeOnComplete ? { type: "noop", payload, removeOnComplete } : { type: "noop", payload })))
      ))
    return {
      addBulk: async (payloads) => void (await enqueue(payloads)),
      add: async (payload) => void (await enqueue([payload])),
      close: () => runtime.dispose()
    }
  },
  startWorker: async ({ concurrency, onJob }) => {
    const noop = Job.define({
      name: "noop",
      payload: NoopPayload,
      removeOnComplete,
      run: (payload) => Effect.sync(() => onJob(payload))
    })
    const sink = tracing ? await otlpSink() : undefined
    const runtime = ManagedRuntime.make(
      Taskfiber.layerWithoutDatabase({ jobs: [noop], config: config(concurrency) }).pipe(
        // As Taskfiber.layer: the supervisor warms the connections once it is idle.
        Layer.provideMerge(database(url, 10, "when-idle")),
        Layer.provide(sink === undefined ? quiet : traced(sink.url))
      )
    )
    // Resolves once the supervisor listens and its dispatcher runs.
    await runtime.runPromise(Effect.void)
    return {
      stop: async () => {
        await runtime.dispose()
        sink?.close()
      }
    }
  },
  remaining: async () => {
    const runtime = ManagedRuntime.make(database(url, 1))
    try {
      return await runtime.runPromise(Effect.flatMap(SqlClient, (sql) =>
        Effect.map(sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks where status <> 'succeeded'`, (rows) => rows[0]!.n)
      ))
    } finally {
      await runtime.dispose()
    }
  }
})

/**
 * taskfiber in its default configuration, with a local prefetch buffer (the
 * high-throughput setting), and with that buffer and tasks that leave on success.
 */
export const factory: SystemFactory = (targets) => [
  system("taskfiber", "defaults (PREFETCH=0), MAX_CONCURRENT_JOBS=10", targets.databaseUrl, (concurrency) => ({ maxConcurrentJobs: concurrency })),
  system("taskfiber-fast", "PREFETCH=1000, CLAIM_BATCH=500, MAX_CONCURRENT_JOBS=10", targets.databaseUrl, (concurrency) => ({
    maxConcurrentJobs: concurrency,
    prefetch: 1000,
    claimBatch: 500
  })),
  // A separate row, never the default: graphile-worker's data model (a job leaves on
  // success, no history), as BullMQ's removeOnComplete.
  system("taskfiber-lean", "PREFETCH=1000, CLAIM_BATCH=500, MAX_CONCURRENT_JOBS=10, removeOnComplete", targets.databaseUrl, (concurrency) => ({
    maxConcurrentJobs: concurrency,
    prefetch: 1000,
    claimBatch: 500
  }), true),
  // Not in the README's table: the cost of tracing, every run, claim and statement a
  // span exported over OTLP/HTTP to a collector on loopback.
  system("taskfiber-fast-traced", "taskfiber-fast + OTEL_ENABLED=true (OTLP/HTTP to a loopback sink)", targets.databaseUrl, (concurrency) => ({
    maxConcurrentJobs: concurrency,
    prefetch: 1000,
    claimBatch: 500
  }), false, true)
]
