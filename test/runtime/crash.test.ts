/**
 * A worker process is killed (SIGKILL: no finalizer, no release) while it runs a
 * task. After the lease expires, another supervisor's reaper makes the task
 * retrying and it runs again, resuming from the checkpoint the first run saved.
 */
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Queue, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as CancelBus from "../../src/runtime/CancelBus.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import * as Database from "../../src/store/Database.ts"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as Workers from "../../src/store/Workers.ts"
import { Resumable } from "../support/resumable.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const worker = fileURLToPath(new URL("../support/crashWorker.ts", import.meta.url))

/** A child process whose stdout lines arrive on a bounded queue; killed with the scope. */
const spawnWorker = (url: string) =>
  Effect.gen(function*() {
    const lines = yield* Queue.sliding<string>(10_000)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, [worker], { env: { ...process.env, DATABASE_URL: url }, stdio: ["ignore", "pipe", "inherit"] })),
      (c) => Effect.sync(() => c.exitCode === null && c.kill("SIGKILL"))
    )
    createInterface({ input: child.stdout! }).on("line", (line) => Queue.offerUnsafe(lines, line))
    return { child, lines }
  })

it.live("a task of a killed worker runs again elsewhere after its lease expires, from its checkpoint", () =>
  Effect.gen(function*() {
    const name = yield* TestDatabase.scopedDatabase
    const url = TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name)
    const env = yield* Layer.build(
      Layer.mergeAll(TaskStore.layer, Workers.layer, CancelBus.layerLocal).pipe(Layer.provideMerge(Database.layerUrl(Redacted.make(url))))
    )
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
