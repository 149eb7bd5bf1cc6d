/**
 * The job runtime's own cost per task, without PostgreSQL's: a supervisor with the
 * taskfiber-fast settings runs `--tasks` no-op tasks (default 200,000) served by an
 * in-memory store, and prints the worker's CPU and wall time per task. A drain
 * against PostgreSQL shares two cores between the worker and the database and
 * scatters ±20%; this figure moves only with the runtime's code, so it is the one
 * to compare before and after a change to the supervisor, the runner or the
 * completer. Figures (see README, Benchmarks): a fresh process's first 20,000
 * tasks cost this benchmark 18.5–20.5 µs of CPU each, 9.8 µs once warm (they were
 * 39–48 and 15 before the run's span became conditional, handler fibers started
 * without a scope and timeouts shared a timer); in a real drain of 20,000 tasks,
 * start included, taskfiber-lean's worker takes 19–28 µs of CPU per task and
 * graphile-worker-fast's 18–26.
 *
 *   node bench/runtime.ts [--tasks 200000] [--runs 3]
 *
 * The in-memory store implements only what a supervisor calls while draining
 * (claim, complete, lease renewal, the next due time; the worker registry's writes
 * do nothing), and there are no wake-ups (every task exists before the supervisor starts); it is a measuring device, never a
 * stand-in in a test. No database is needed.
 */
import { parseArgs } from "node:util"
import { Effect, Layer, ManagedRuntime, Option, References, Schema } from "effect"
import * as CancelBus from "../src/coordination/CancelBus.ts"
import * as Wakeups from "../src/coordination/Wakeups.ts"
import * as Metrics from "../src/observability/Metrics.ts"
import * as RuntimeEvents from "../src/observability/RuntimeEvents.ts"
import * as Job from "../src/runtime/Job.ts"
import * as JobRegistry from "../src/runtime/JobRegistry.ts"
import * as RuntimeConfig from "../src/runtime/RuntimeConfig.ts"
import * as Supervisor from "../src/runtime/Supervisor.ts"
import type { ClaimedTask } from "../src/domain/Task.ts"
import { newTaskId } from "../src/store/TaskId.ts"
import { TaskStore } from "../src/store/TaskStore.ts"
import { Workers } from "../src/store/Workers.ts"

const { values: args } = parseArgs({
  options: {
    tasks: { type: "string", default: "200000" },
    runs: { type: "string", default: "3" },
    // The runtime's metrics are on by default, as in Taskfiber.layer; off, their cost shows.
    "without-metrics": { type: "boolean", default: false }
  }
})
const total = Number(args.tasks)
const runs = Number(args.runs)

const unsupported = (name: string) => Effect.die(new Error(`the in-memory store does not implement ${name}`))

/** A store holding `count` queued no-op tasks in memory. */
const memoryStore = (count: number) => {
  let next = 0
  return TaskStore.of({
    claimToRun: (o) =>
      Effect.sync(() => {
        const n = Math.min(o.limit, count - next)
        const claimed: Array<ClaimedTask> = []
        for (let i = 0; i < n; i++) {
          claimed.push({
            id: newTaskId(), queue: "default", type: "noop", payload: { t: next + i }, attempt: 1, maxAttempts: 25,
            checkpoint: null, removeOnComplete: false, revision: 2, startRecorded: true, recordStartFirst: false,
            priority: 0, waitedMs: 1
          })
        }
        next += n
        return claimed
      }),
    complete: (_worker, items) => Effect.sync(() => items.map((i) => ({ id: i.id, revision: i.revision }))),
    extendLeases: (_worker, _lease, claims) => Effect.succeed(claims.map((c) => c.id)),
    reapExpired: () => Effect.succeed([]),
    msUntilNextDue: () => Effect.succeed(Option.none()),
    release: (_worker, claims) => Effect.succeed(claims.map((c) => c.id)),
    statuses: () => unsupported("statuses"),
    cancelClaimed: () => unsupported("cancelClaimed"),
    recordStart: () => unsupported("recordStart"),
    enqueue: () => unsupported("enqueue"),
    enqueueMany: () => unsupported("enqueueMany"),
    get: () => unsupported("get"),
    list: () => unsupported("list"),
    claim: () => unsupported("claim"),
    retry: () => unsupported("retry"),
    fail: () => unsupported("fail"),
    cancel: () => unsupported("cancel"),
    replay: () => unsupported("replay"),
    recordProgress: () => unsupported("recordProgress"),
    stats: unsupported("stats")
  })
}

const runOnce = async (): Promise<{ readonly cpuUs: number; readonly wallUs: number }> => {
  let handled = 0
  let finish!: () => void
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const noop = Job.define({
    name: "noop",
    payload: Schema.Struct({ t: Schema.Number }),
    run: () => Effect.sync(() => {
      if (++handled === total) finish()
    })
  })
  const config: RuntimeConfig.RuntimeConfig = { ...RuntimeConfig.defaults, maxConcurrentJobs: 10, prefetch: 1000, claimBatch: 500 }
  const layer = Supervisor.layerWith(config).pipe(
    Layer.provideMerge(Layer.mergeAll(
      Layer.succeed(TaskStore, memoryStore(total)),
      Layer.succeed(Workers, Workers.of({
        seen: () => Effect.void,
        stopped: () => Effect.void,
        live: () => unsupported("live"),
        unserved: () => Effect.succeed([])
      })),
      CancelBus.layerLocal,
      Wakeups.layerNone,
      JobRegistry.layer([noop])
    ).pipe(Layer.provideMerge(args["without-metrics"] ? RuntimeEvents.layer : Metrics.layer.pipe(Layer.provideMerge(RuntimeEvents.layer))))),
    Layer.provide(Layer.succeed(References.MinimumLogLevel, "Warn"))
  )
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const runtime = ManagedRuntime.make(layer)
  await runtime.runPromise(Effect.void)
  await finished
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  await runtime.dispose()
  return { cpuUs: (cpu.user + cpu.system) / total, wallUs: (wall * 1000) / total }
}

const results: Array<{ readonly cpuUs: number; readonly wallUs: number }> = []
for (let i = 0; i < runs; i++) results.push(await runOnce())
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(
  `runtime${args["without-metrics"] ? " without metrics" : ""}, ${total} no-op tasks, in-memory store, ${runs} runs: ` +
    `CPU ${median(results.map((r) => r.cpuUs)).toFixed(1)} µs/task (${results.map((r) => r.cpuUs.toFixed(1)).join(", ")}), ` +
    `wall ${median(results.map((r) => r.wallUs)).toFixed(1)} µs/task`
)
