/**
 * A worker process is killed (SIGKILL: no finalizer, no release) while it runs a
 * task. After the lease expires, another supervisor's reaper makes the task
 * retrying and it runs again, resuming from the checkpoint the first run saved.
 */
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Queue, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Tasks from "../../src/runtime/Tasks.ts"
import * as Database from "../../src/store/Database.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as Job from "../../src/runtime/Job.ts"
import { OneShot, Resumable } from "../support/resumable.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const worker = fileURLToPath(new URL("../support/crashWorker.ts", import.meta.url))

/** A child process whose stdout lines arrive on a bounded queue; killed with the scope. */
const spawnWorker = (url: string, extraEnv: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const lines = yield* Queue.sliding<string>(10_000)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, [worker], { env: { ...process.env, ...extraEnv, DATABASE_URL: url }, stdio: ["ignore", "pipe", "inherit"] })
      ),
      (c) => Effect.sync(() => c.exitCode === null && c.kill("SIGKILL"))
    )
    createInterface({ input: child.stdout! }).on("line", (line) => Queue.offerUnsafe(lines, line))
    return { child, lines }
  })

/** A database of the test's own (a child process connects to it by URL), with the store on it. */
const freshDatabase = Effect.gen(function*() {
  const name = yield* TestDatabase.scopedDatabase
  const url = TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name)
  const env = yield* Layer.build(
    Taskfiber.runtimeServices().pipe(Layer.provideMerge(Database.layerUrl(Redacted.make(url))))
  )
  return { env, url }
})

it.live("a task of a killed worker runs again elsewhere after its lease expires, from its checkpoint", () =>
  Effect.gen(function*() {
    const { env, url } = yield* freshDatabase
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient
      const { id } = yield* Tasks.enqueue(Resumable, { steps: 6 })
      const { child, lines } = yield* spawnWorker(url)

      // Wait until the first run's checkpoint {step: 3} is durable: the worker logs
      // each write at debug level; after each, look at the row.
      let step = 0
      while (step < 3) {
        const line = yield* Queue.take(lines)
        if (!line.includes("progress saved")) continue
        const [row] = yield* sql<{ checkpoint: { step: number } | null; status: string }>`
          select checkpoint, status::text from taskfiber.tasks where id = ${id}::uuid`
        step = row?.checkpoint?.step ?? 0
      }
      child.kill("SIGKILL")
      yield* Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) resume(Effect.void)
        else child.once("exit", () => resume(Effect.void))
      })

      // Another supervisor, reaping every 200 ms; the dead worker's lease was 1 s.
      const s = yield* Runtime.startSupervisor([Resumable], { reapInterval: Duration.millis(200) })
      const [outcome] = yield* Runtime.outcomesOf(s, 1)
      expect(outcome).toEqual({ taskId: id, outcome: "succeeded" })
      const t = Option.getOrThrow(yield* Effect.flatMap(TaskStore.TaskStore, (store) => store.get(id)))
      expect(t.task).toMatchObject({ status: "succeeded", attempt: 2, result: { resumedFrom: 3, attempt: 2 }, checkpoint: { step: 6 } })
      const stalled = t.events.find((e) => e.from === "running" && e.to === "retrying")
      expect(stalled?.error).toMatchObject({ tag: "LeaseExpired", classification: "transient" })
      const workers = new Set(t.events.filter((e) => e.to === "running").map((e) => e.workerId))
      expect(workers.size).toBe(2)
    }).pipe(Effect.provide(env))
  }).pipe(Effect.scoped), 60_000)

/** A killed child's exit. */
const exited = (child: ReturnType<typeof spawn>) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) resume(Effect.void)
    else child.once("exit", () => resume(Effect.void))
  })

// A job with no retries, PREFETCH=100, MAX_CONCURRENT_JOBS=1, the worker killed
// while it runs the first task. A claim counts the attempt of every task it takes,
// so a reaper that judged by attempts alone would fail all six, five of which never
// started. The claim records that only the first started, and the reaper hands the
// other five back to the queue with their attempt.
it.live("a killed worker's prefetched tasks that never started go back to the queue with their attempt, and run", () =>
  Effect.gen(function*() {
    const { env, url } = yield* freshDatabase
    yield* Effect.gen(function*() {
      const ids: Array<string> = []
      for (let n = 0; n < 6; n++) ids.push((yield* Tasks.enqueue(OneShot, { n })).id)
      const { child, lines } = yield* spawnWorker(url, { PREFETCH: "100", MAX_CONCURRENT_JOBS: "1" })
      let running: string | undefined
      while (running === undefined) {
        const line = yield* Queue.take(lines)
        if (line.includes("one-shot started")) running = ids.find((id) => line.includes(id))
      }
      child.kill("SIGKILL")
      yield* exited(child)

      // The next worker runs them to success (same job name, a handler that returns).
      const Fine = Job.define({ name: "one-shot", queue: "crash-prefetch", payload: Schema.Struct({ n: Schema.Int }), run: (p) => Effect.succeed(p.n) })
      const s = yield* Runtime.startSupervisor([Fine], { reapInterval: Duration.millis(100) })
      const outcomes = yield* Runtime.outcomesOf(s, 5)
      const store = yield* TaskStore.TaskStore
      const tasks = yield* Effect.forEach(ids, (id) => Effect.map(store.get(id), (t) => Option.getOrThrow(t)))
      const started = tasks.find((t) => t.task.id === running)!
      // The one that ran when the worker died used its only attempt.
      expect(started.task).toMatchObject({ status: "failed", attempt: 1, lastError: { tag: "LeaseExpired" } })
      const rest = tasks.filter((t) => t.task.id !== running)
      expect(outcomes.map((o) => o.outcome)).toEqual(Array(5).fill("succeeded"))
      expect([...outcomes.map((o) => o.taskId)].sort()).toEqual(rest.map((t) => t.task.id).sort())
      for (const t of rest) {
        expect(t.task).toMatchObject({ status: "succeeded", attempt: 1 })
        // Handed back unstarted: running -> queued, then claimed and run once.
        expect(t.events.map((e) => e.to)).toEqual(["queued", "running", "queued", "running", "succeeded"])
      }
    }).pipe(Effect.provide(env))
  }).pipe(Effect.scoped), 60_000)
