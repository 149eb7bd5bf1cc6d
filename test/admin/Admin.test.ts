/**
 * The operator's operations on a real database: each one's answer, and its typed
 * errors. Failed tasks are made the way a worker makes them (claim, fail), dead
 * letters of Kafka input the way the ingress records them.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Option, Schema, Stream } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Admin from "../../src/admin/Admin.ts"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as Job from "../../src/runtime/Job.ts"
import { DeadLetters } from "../../src/store/DeadLetters.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import { QueuePauses } from "../../src/store/QueuePauses.ts"
import * as Runtime from "../support/Runtime.ts"

const started = Deferred.makeUnsafe<string>()
const Hold = Job.define({
  name: "hold",
  queue: "admin-hold",
  payload: Schema.Struct({}),
  run: (_, ctx) => Effect.andThen(Deferred.succeed(started, ctx.taskId), Effect.never)
})
const Mail = Job.define({
  name: "mail",
  queue: "mail",
  otherQueues: ["mail-bulk"],
  priority: 5,
  maxAttempts: 3,
  timeout: "30 seconds",
  payload: Schema.Struct({ to: Schema.String, cc: Schema.optionalKey(Schema.Array(Schema.String)) }),
  retry: RetryPolicy.none,
  run: () => Effect.void
})

const Env = Admin.layer.pipe(Layer.provideMerge(Runtime.base([Mail, Hold])))
const boom = { tag: "Boom", message: "boom", classification: "permanent" } as const

/** Enqueues a task of `type` in `queue` and fails it as a worker would; returns its id. */
const failedTask = (type: string, queue: string) =>
  Effect.gen(function*() {
    const store = yield* TaskStore
    const { id } = yield* store.enqueue({ type, queue, maxAttempts: 1 })
    const [claimed] = yield* store.claim({ workerId: "w", queues: [queue], limit: 1, leaseMs: 60_000 })
    expect(claimed?.id).toBe(id)
    expect(Option.isSome(yield* store.fail("w", claimed!, boom))).toBe(true)
    return id
  })

it.layer(Env, { timeout: 60_000 })("Admin", (it) => {
  it.effect("listTasks pages with a cursor and filters; getTask has the events, or TaskNotFound", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const store = yield* TaskStore
      const ids = (yield* store.enqueueMany(Array.from({ length: 5 }, () => ({ type: "mail", queue: "list-q", payload: { to: "a" } }))))
        .map((r) => r.id).sort()
      const first = yield* admin.listTasks({ queue: "list-q", limit: 3 })
      expect(first.tasks.map((t) => t.id)).toEqual(ids.slice(0, 3))
      const second = yield* admin.listTasks({ queue: "list-q", limit: 3, cursor: first.nextCursor! })
      expect(second.tasks.map((t) => t.id)).toEqual(ids.slice(3))
      expect(second.nextCursor).toBeUndefined()
      expect((yield* admin.listTasks({ queue: "list-q", status: "running" })).tasks).toEqual([])
      expect((yield* admin.listTasks({ queue: "list-q", type: "other" })).tasks).toEqual([])
      // A cursor no page gave is refused, not taken for the first page.
      for (const cursor of ["nope", Buffer.from(JSON.stringify("not-a-uuid")).toString("base64url"), Buffer.from(JSON.stringify(["1".repeat(17), ids[0]])).toString("base64url")]) {
        expect((yield* Effect.flip(admin.listTasks({ cursor })))._tag).toBe("InvalidCursor")
        expect((yield* Effect.flip(admin.listDeadLetters({ cursor })))._tag).toBe("InvalidCursor")
      }
      expect((yield* Effect.flip(admin.listDeadLetters({ cursor: first.nextCursor! })))._tag).toBe("InvalidCursor")
      // An empty one is none: the first page.
      expect((yield* admin.listTasks({ queue: "list-q", limit: 3, cursor: "" })).tasks).toEqual(first.tasks)

      const got = yield* admin.getTask(ids[0]!)
      expect(got.task).toMatchObject({ id: ids[0], status: "queued", queue: "list-q" })
      expect(got.events.map((e) => e.to)).toEqual(["queued"])
      const missing = crypto.randomUUID()
      expect(yield* Effect.flip(admin.getTask(missing))).toEqual(new Admin.TaskNotFound({ id: missing }))
      expect((yield* Effect.flip(admin.getTask("nope")))._tag).toBe("TaskNotFound")
    }))

  it.effect("cancelTask: cancelled now with the previous status, or already final with its status; TaskNotFound", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const store = yield* TaskStore
      const { id } = yield* store.enqueue({ type: "mail", queue: "cancel-q" })
      expect(yield* admin.cancelTask(id, "not needed")).toEqual({ _tag: "Cancelled", id, previousStatus: "queued" })
      const task = yield* admin.getTask(id)
      expect(task.task.status).toBe("cancelled")
      expect(task.task.lastError?.message).toBe("not needed")
      expect(yield* admin.cancelTask(id)).toEqual({ _tag: "AlreadyFinal", id, status: "cancelled" })
      const failed = yield* failedTask("mail", "cancel-q")
      expect(yield* admin.cancelTask(failed)).toEqual({ _tag: "AlreadyFinal", id: failed, status: "failed" })
      const missing = crypto.randomUUID()
      expect(yield* Effect.flip(admin.cancelTask(missing))).toEqual(new Admin.TaskNotFound({ id: missing }))
      expect((yield* Effect.flip(admin.cancelTask("not-a-uuid")))._tag).toBe("TaskNotFound")
    }))

  it.effect("cancelTask of a running task interrupts its handler through the CancelBus", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const store = yield* TaskStore
      const supervisor = yield* Runtime.startSupervisor([Hold])
      const { id } = yield* store.enqueue({ type: "hold", queue: "admin-hold" })
      expect(yield* Deferred.await(started)).toBe(id)
      expect(yield* admin.cancelTask(id)).toEqual({ _tag: "Cancelled", id, previousStatus: "running" })
      const [outcome] = yield* Runtime.outcomesOf(supervisor, 1)
      expect(outcome).toEqual({ taskId: id, outcome: "cancelled" })
    }).pipe(Effect.scoped))

  it.effect("retryTask queues a failed task again; TaskNotFailed names the status; TaskNotFound", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const store = yield* TaskStore
      const id = yield* failedTask("mail", "retry-q")
      const task = yield* admin.retryTask(id)
      expect(task).toMatchObject({ id, status: "queued", attempt: 0 })
      expect(yield* Effect.flip(admin.retryTask(id))).toEqual(new Admin.TaskNotFailed({ id, status: "queued" }))
      expect((yield* Effect.flip(admin.retryTask(id))).message).toBe(`task ${id} is queued, not failed: only a failed task can be retried`)
      const missing = crypto.randomUUID()
      expect(yield* Effect.flip(admin.retryTask(missing))).toEqual(new Admin.TaskNotFound({ id: missing }))
      yield* store.cancel([id], "done")
    }))

  it.effect("listDeadLetters: failed tasks and Kafka input, newest first, by type and source, with a cursor", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const letters = yield* DeadLetters
      const sql = yield* SqlClient
      yield* sql`truncate taskfiber.dead_letters`
      const a = yield* failedTask("dlq-a", "dlq-q")
      yield* letters.record([{ source: "kafka", type: "dlq-a", reason: "not JSON", topic: "in", partition: 2, offset: "41", timestamp: "1" }])
      const b = yield* failedTask("dlq-b", "dlq-q")
      const all = yield* admin.listDeadLetters()
      expect(all.letters.map((l) => [l.source, l.taskId, l.type])).toEqual([["task", b, "dlq-b"], ["kafka", null, "dlq-a"], ["task", a, "dlq-a"]])
      expect(all.letters[0]).toMatchObject({ reason: "boom", queue: "dlq-q", attempt: 1, replayedAt: null, kafka: null, error: boom })
      expect(all.letters[1]).toMatchObject({ reason: "not JSON", kafka: { topic: "in", partition: 2, offset: "41" } })
      expect(all.letters[0]!.createdAt).toBeInstanceOf(Date)
      expect(all.nextCursor).toBeUndefined()

      // Letters written in the same microsecond page correctly: (created_at, id) order.
      yield* sql`update taskfiber.dead_letters set created_at = '2024-01-01T00:00:00.123456Z'`
      const seen: Array<string> = []
      let cursor: string | undefined
      do {
        const page = yield* admin.listDeadLetters({ limit: 1, ...(cursor === undefined ? {} : { cursor }) })
        seen.push(...page.letters.map((l) => l.id))
        cursor = page.nextCursor
      } while (cursor !== undefined)
      expect(new Set(seen).size).toBe(3)
      expect(seen).toEqual(all.letters.map((l) => l.id).sort().reverse())

      expect((yield* admin.listDeadLetters({ type: "dlq-a" })).letters.map((l) => l.source).sort()).toEqual(["kafka", "task"])
      expect((yield* admin.listDeadLetters({ type: "dlq-a", source: "task" })).letters.map((l) => l.taskId)).toEqual([a])
      expect((yield* admin.listDeadLetters({ source: "kafka" })).letters).toHaveLength(1)
    }))

  it.effect("replayDeadLetter replays the task behind it; a Kafka letter is NotReplayable; DeadLetterNotFound", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const letters = yield* DeadLetters
      const sql = yield* SqlClient
      yield* sql`truncate taskfiber.dead_letters`
      const id = yield* failedTask("replay-one", "replay-q")
      yield* letters.record([{ source: "kafka", reason: "missing header task-type", topic: "in", partition: 0, offset: "7", timestamp: "1" }])
      const [kafka, task] = [...(yield* admin.listDeadLetters()).letters].sort((x, y) => x.source.localeCompare(y.source))
      const replayed = yield* admin.replayDeadLetter(task!.id)
      expect(replayed.letter.id).toBe(task!.id)
      expect(replayed.task).toMatchObject({ id, status: "queued" })
      const after = Option.getOrThrow(yield* letters.get(task!.id))
      expect(after.replayedAt).toBeInstanceOf(Date)
      // Replayed already: the task is queued, not failed.
      expect(yield* Effect.flip(admin.replayDeadLetter(task!.id))).toEqual(new Admin.TaskNotFailed({ id, status: "queued" }))
      const notReplayable = yield* Effect.flip(admin.replayDeadLetter(kafka!.id))
      expect(notReplayable).toEqual(new Admin.NotReplayable({ id: kafka!.id, source: "kafka" }))
      expect(notReplayable.message).toMatch(/never became a task/)
      const missing = crypto.randomUUID()
      expect(yield* Effect.flip(admin.replayDeadLetter(missing))).toEqual(new Admin.DeadLetterNotFound({ id: missing }))
      expect((yield* Effect.flip(admin.replayDeadLetter("x")))._tag).toBe("DeadLetterNotFound")
      // A letter whose task is gone.
      const gone = yield* failedTask("replay-one", "replay-gone-q")
      yield* sql`delete from taskfiber.tasks where id = ${gone}::uuid`
      const letter = (yield* admin.listDeadLetters({ type: "replay-one" })).letters.find((l) => l.taskId === gone)!
      expect(yield* Effect.flip(admin.replayDeadLetter(letter.id))).toEqual(new Admin.TaskNotFound({ id: gone }))
    }))

  it.effect("replayAll replays every failed task of a type in batches, with progress, and only those there when it began", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const store = yield* TaskStore
      const sql = yield* SqlClient
      yield* sql`truncate taskfiber.dead_letters`
      const many = yield* Effect.forEach(Array.from({ length: 7 }), () => failedTask("bulk", "bulk-q"))
      const other = yield* failedTask("bulk-other", "bulk-q")
      // One whose task is gone: skipped, not an error.
      const gone = yield* failedTask("bulk", "bulk-q")
      yield* sql`delete from taskfiber.tasks where id = ${gone}::uuid`

      const progress = yield* Stream.runCollect(admin.replayAll({ type: "bulk", batchSize: 3 }))
      expect(progress).toEqual([
        { total: 8, replayed: 0, skipped: 0 },
        { total: 8, replayed: 3, skipped: 0 },
        { total: 8, replayed: 6, skipped: 0 },
        { total: 8, replayed: 7, skipped: 1 }
      ])
      const statuses = yield* store.statuses([...many, other])
      expect(statuses.filter((s) => s.status === "queued").map((s) => s.id).sort()).toEqual([...many].sort())
      expect(statuses.find((s) => s.id === other)?.status).toBe("failed")
      // Nothing left of that type: the letter of the task that is gone was marked too.
      expect(yield* Stream.runCollect(admin.replayAll({ type: "bulk" }))).toEqual([{ total: 0, replayed: 0, skipped: 0 }])
      // A failure written after the walk began is not replayed by it.
      const late = yield* Stream.runCollect(admin.replayAll().pipe(
        Stream.tap((p) => p.replayed === 0 && p.skipped === 0 ? Effect.asVoid(failedTask("bulk-other", "bulk-late-q")) : Effect.void)
      ))
      expect(late.at(-1)).toEqual({ total: 1, replayed: 1, skipped: 0 })
      expect((yield* admin.listDeadLetters({ type: "bulk-other" })).letters.filter((l) => l.replayedAt === null)).toHaveLength(1)
      yield* store.cancel((yield* store.list({ queue: "bulk-q", status: "queued" })).tasks.map((t) => t.id), "done")
    }))

  it.effect("queues: depth by status and band, running, waiting, ready and the oldest ready's age; registered queues too", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      const store = yield* TaskStore
      const sql = yield* SqlClient
      yield* sql`truncate taskfiber.tasks, taskfiber.task_events`
      yield* store.enqueueMany([
        { type: "mail", queue: "depth-q", priority: 5 },
        { type: "mail", queue: "depth-q", priority: 5 },
        { type: "mail", queue: "depth-q", priority: 0 },
        { type: "mail", queue: "depth-q", priority: -3, delayMs: 3_600_000 }
      ])
      yield* sql`update taskfiber.tasks set run_at = now() - interval '90 seconds' where queue = 'depth-q' and priority = 0`
      yield* store.claim({ workerId: "w", queues: ["depth-q"], limit: 1, leaseMs: 60_000 })
      const queues = yield* admin.queues
      expect(queues.map((q) => q.queue)).toEqual(["admin-hold", "depth-q", "mail", "mail-bulk"])
      const depth = queues.find((q) => q.queue === "depth-q")!
      // The claim took a priority-5 task (5 beats 0 aged by 90 s: 1.5).
      expect(depth).toMatchObject({ waiting: 3, ready: 2, running: 1 })
      expect(depth.depth).toEqual([
        { status: "queued", band: "high", tasks: 1, ready: 1 },
        { status: "queued", band: "normal", tasks: 1, ready: 1 },
        { status: "queued", band: "low", tasks: 1, ready: 0 },
        { status: "running", band: "high", tasks: 1, ready: 0 }
      ])
      expect(depth.oldestReadyMs).toBeGreaterThanOrEqual(90_000)
      expect(queues.find((q) => q.queue === "mail")).toEqual({ queue: "mail", depth: [], waiting: 0, ready: 0, running: 0, oldestReadyMs: null, paused: null })
      // A paused queue says since when and why.
      const pauses = yield* QueuePauses
      yield* pauses.pause("mail", "maintenance")
      expect((yield* admin.queues).find((q) => q.queue === "mail")!.paused).toEqual({ since: expect.any(Date), reason: "maintenance" })
      yield* pauses.resume("mail")
    }))

  it.effect("jobs: name, queues, priority, limits and the payload as JSON Schema", () =>
    Effect.gen(function*() {
      const admin = yield* Admin.Admin
      expect(admin.jobs.map((j) => j.name)).toEqual(["hold", "mail"])
      expect(admin.jobs[1]).toEqual({
        name: "mail",
        queue: "mail",
        queues: ["mail", "mail-bulk"],
        priority: 5,
        maxAttempts: 3,
        timeoutMs: 30_000,
        removeOnComplete: false,
        payloadSchema: {
          $schema: "https://json-schema.org/draft/2020-12/schema",
          type: "object",
          properties: { to: { type: "string" }, cc: { type: "array", items: { type: "string" } } },
          required: ["to"],
          additionalProperties: true
        }
      })
      expect(admin.jobs[0]).toMatchObject({ name: "hold", maxAttempts: null, timeoutMs: null, priority: 0 })
    }))
})
