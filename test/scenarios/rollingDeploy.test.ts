/**
 * Work a worker cannot run is never failed by it, and never waits in silence.
 *
 * - A task type this worker's registry does not know (a newer deploy enqueued it
 *   while older workers run) is not claimed: it waits, queued, for a worker that
 *   knows it. Before, the old worker claimed it and dead-lettered it with
 *   UnknownTaskType.
 * - A job's queue is part of its definition: an enqueue into a queue that is not
 *   one of the job's is refused; a job's `otherQueues` are served by every worker
 *   that has the job; due tasks no live worker serves are reported (Workers).
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Option, Schema } from "effect"
import * as Job from "../../src/runtime/Job.ts"
import * as JobRegistry from "../../src/runtime/JobRegistry.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Workers from "../../src/store/Workers.ts"
import * as Runtime from "../support/Runtime.ts"

const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map((t) => Option.getOrThrow(t).task))

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("rolling deploys", (it) => {
  it.effect("a task of a type this worker does not know stays queued for a worker that knows it", () =>
    Effect.gen(function*() {
      const Old = Job.define({ name: "old-job", queue: "deploy", payload: Schema.Struct({}), run: () => Effect.succeed("old") })
      const New = Job.define({ name: "new-job", queue: "deploy", payload: Schema.Struct({}), run: () => Effect.succeed("new") })
      // The new type first, so that an old worker's claim meets it before its own.
      const fresh = yield* Tasks.enqueue(New, {}, { priority: 5 })
      const old = yield* Tasks.enqueue(Old, {})
      yield* Effect.scoped(Effect.gen(function*() {
        const s = yield* Runtime.startSupervisor([Old])
        const [o] = yield* Runtime.outcomesOf(s, 1)
        expect(o).toEqual({ taskId: old.id, outcome: "succeeded" })
        expect(yield* getTask(fresh.id)).toMatchObject({ status: "queued", attempt: 0, lastError: null })
      }))
      // The new deploy arrives.
      yield* Effect.scoped(Effect.gen(function*() {
        const s = yield* Runtime.startSupervisor([Old, New])
        const [o] = yield* Runtime.outcomesOf(s, 1)
        expect(o).toEqual({ taskId: fresh.id, outcome: "succeeded" })
        expect(yield* getTask(fresh.id)).toMatchObject({ status: "succeeded", attempt: 1, result: "new" })
      }))
    }))

  it.effect("an enqueue into a queue that is not the job's is refused; its otherQueues are served", () =>
    Effect.gen(function*() {
      const Mail = Job.define({
        name: "mail-lanes", queue: "mail", otherQueues: ["mail-bulk"], payload: Schema.Struct({}), run: () => Effect.succeed("sent")
      })
      const refused = yield* Effect.flip(Tasks.enqueue(Mail, {}, { queue: "other" }))
      expect(refused._tag).toBe("QueueNotAllowed")
      expect(refused.message).toBe(
        `task type "mail-lanes" runs in queue "mail", "mail-bulk", not "other" (a job's otherQueues lets its tasks into more queues; workers with the job serve them all)`
      )
      const byName = yield* Effect.flip(Tasks.enqueueByName(JobRegistry.make([Mail]), "mail-lanes", {}, { queue: "other" }))
      expect(byName._tag).toBe("QueueNotAllowed")
      const bulk = yield* Tasks.enqueue(Mail, {}, { queue: "mail-bulk" })
      const s = yield* Runtime.startSupervisor([Mail])
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: bulk.id, outcome: "succeeded" })
      expect(yield* getTask(bulk.id)).toMatchObject({ queue: "mail-bulk", status: "succeeded" })
    }).pipe(Effect.scoped))

  it.effect("due tasks that no live worker serves are reported by queue and type; served ones are not", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore
      const workers = yield* Workers.Workers
      const Here = Job.define({ name: "served-here", queue: "served", payload: Schema.Struct({}), run: () => Effect.never })
      yield* Runtime.startSupervisor([Here], { shutdownGrace: Duration.millis(10) })
      // Written past the job's definition: another producer, raw SQL, a typo.
      yield* store.enqueue({ type: "served-here", queue: "nobody-runs-this-queue" })
      yield* store.enqueue({ type: "no-such-type", queue: "served" })
      yield* store.enqueue({ type: "served-here", queue: "served", delayMs: 3_600_000 }) // not due yet
      const unserved = yield* workers.unserved(Workers.liveWithinMs)
      expect(unserved.map((u) => [u.queue, u.type, u.count]).sort()).toEqual([
        ["nobody-runs-this-queue", "served-here", 1],
        ["served", "no-such-type", 1]
      ])
      const live = yield* workers.live(Workers.liveWithinMs)
      expect(live.some((w) => w.queues.includes("served") && w.types.includes("served-here"))).toBe(true)
    }).pipe(Effect.scoped))
})
