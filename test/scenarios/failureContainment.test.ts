/**
 * Failure containment: per-queue limits, a dispatcher that restarts after a defect,
 * a crashing handler that disturbs no other job, payloads checked at enqueue and
 * at run time, unknown job types.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Option, Ref, Schema } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as JobRegistry from "../../src/runtime/JobRegistry.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map(Option.getOrThrow))

it.layer(Runtime.storeOnly, { timeout: 120_000, excludeTestServices: true })("failure containment", (it) => {
  it.effect("QUEUE_CONCURRENCY caps one queue while others use the free slots", () =>
    Effect.gen(function*() {
      /** Counts runs in flight and remembers the most at once. */
      const gauge = Effect.gen(function*() {
        const active = yield* Ref.make(0)
        const peak = yield* Ref.make(0)
        const track = Effect.gen(function*() {
          const now = yield* Ref.updateAndGet(active, (n) => n + 1)
          yield* Ref.update(peak, (p) => Math.max(p, now))
          yield* Effect.sleep(30)
          yield* Ref.update(active, (n) => n - 1)
        })
        return { track, peak: Ref.get(peak) }
      })
      const limited = yield* gauge
      const free = yield* gauge
      const Limited = Job.define({ name: "limited", queue: "emails", payload: Schema.Struct({}), run: () => limited.track })
      const Free = Job.define({ name: "free", queue: "free", payload: Schema.Struct({}), run: () => free.track })
      for (let i = 0; i < 6; i++) yield* Tasks.enqueue(Limited, {})
      for (let i = 0; i < 6; i++) yield* Tasks.enqueue(Free, {})
      const s = yield* Runtime.startSupervisor([Limited, Free], { maxConcurrentJobs: 5, queueConcurrency: new Map([["emails", 2]]) })
      yield* Runtime.outcomesOf(s, 12)
      expect(yield* limited.peak).toBe(2)
      expect(yield* free.peak).toBeGreaterThan(2)
    }).pipe(Effect.scoped))

  it.effect("a dispatcher whose claims fail is logged and goes on, then runs the work", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const Echo = Job.define({ name: "echo-restart", queue: "restart", payload: Schema.Struct({}), run: () => Effect.succeed("ok") })
      const s = yield* Runtime.startSupervisor([Echo])
      // Break the claim function under the running dispatcher.
      yield* sql`alter function taskfiber.claim(text, text[], integer, bigint, double precision, double precision, boolean, text[], integer) rename to claim_broken`
      const { id } = yield* Tasks.enqueue(Echo, {})
      expect((yield* getTask(id)).task.status).toBe("queued")
      yield* sql`alter function taskfiber.claim_broken(text, text[], integer, bigint, double precision, double precision, boolean, text[], integer) rename to claim`
      const [outcome] = yield* Runtime.outcomesOf(s, 1)
      expect(outcome).toEqual({ taskId: id, outcome: "succeeded" })
    }).pipe(Effect.scoped))

  it.effect("a handler that throws (a defect) is retried and disturbs no other job", () =>
    Effect.gen(function*() {
      const Thrower = Job.define({
        name: "thrower", queue: "defects", payload: Schema.Struct({}),
        retry: RetryPolicy.exponential({ baseMs: 1, maxDelayMs: 1, maxAttempts: 2 }),
        run: (_, ctx) => ctx.attempt === 1 ? Effect.sync(() => { throw new Error("kaboom") }) : Effect.succeed("second time lucky")
      })
      // Throws before it has an effect to return.
      const ThrowsInRun = Job.define({
        name: "throws-in-run", queue: "defects", payload: Schema.Struct({}),
        retry: RetryPolicy.exponential({ baseMs: 1, maxDelayMs: 1, maxAttempts: 2 }),
        run: (_, ctx) => {
          if (ctx.attempt === 1) throw new Error("kaboom before the effect")
          return Effect.succeed("second time lucky")
        }
      })
      const Fine = Job.define({ name: "fine", queue: "defects", payload: Schema.Struct({ n: Schema.Int }), run: (p) => Effect.succeed(p.n) })
      const s = yield* Runtime.startSupervisor([Thrower, ThrowsInRun, Fine])
      const thrower = yield* Tasks.enqueue(Thrower, {})
      const throwsInRun = yield* Tasks.enqueue(ThrowsInRun, {})
      for (let n = 0; n < 5; n++) yield* Tasks.enqueue(Fine, { n })
      const outcomes = yield* Runtime.outcomesOf(s, 9)
      expect(outcomes.filter((o) => o.outcome === "succeeded")).toHaveLength(7)
      const t = yield* getTask(thrower.id)
      expect(t.task).toMatchObject({ status: "succeeded", attempt: 2 })
      expect(t.events.find((e) => e.to === "retrying")?.error).toMatchObject({ message: "kaboom", classification: "transient" })
      const u = yield* getTask(throwsInRun.id)
      expect(u.task).toMatchObject({ status: "succeeded", attempt: 2 })
      expect(u.events.find((e) => e.to === "retrying")?.error).toMatchObject({ message: "kaboom before the effect", classification: "transient" })
    }).pipe(Effect.scoped))

  it.effect("a handler that interrupts itself uses up its attempts instead of running for ever", () =>
    Effect.gen(function*() {
      const Quitter = Job.define({
        name: "quitter", queue: "self-interrupt", payload: Schema.Struct({}),
        retry: RetryPolicy.exponential({ baseMs: 1, maxDelayMs: 1, maxAttempts: 3 }),
        run: () => Effect.interrupt
      })
      const s = yield* Runtime.startSupervisor([Quitter])
      const { id } = yield* Tasks.enqueue(Quitter, {})
      const outcomes = yield* Runtime.outcomesOf(s, 3)
      expect(outcomes.map((o) => o.outcome)).toEqual(["retrying", "retrying", "failed"])
      expect((yield* getTask(id)).task).toMatchObject({ status: "failed", attempt: 3, lastError: { message: "the handler interrupted itself" } })
    }).pipe(Effect.scoped))

  it.effect("payloads are checked at enqueue (error names the field) and again at run time (dead letter)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const Mail = Job.define({
        name: "mail", queue: "payloads", payload: Schema.Struct({ to: Schema.String, retries: Schema.Int }),
        run: (p) => Effect.succeed(p.to)
      })
      const registry = JobRegistry.make([Mail])
      const bad = yield* Effect.flip(Tasks.enqueueByName(registry, "mail", { to: "a@b.c", retries: "three" }))
      expect(bad._tag).toBe("PayloadInvalid")
      expect(bad._tag === "PayloadInvalid" && bad.path).toBe("retries")
      const unknown = yield* Effect.flip(Tasks.enqueueByName(registry, "nope", {}))
      expect(unknown._tag).toBe("UnknownTaskType")
      // A row written behind the schema's back (another producer, an old version).
      const store = yield* TaskStore
      const raw = yield* store.enqueue({ type: "mail", queue: "payloads", payload: { to: 42 } })
      const s = yield* Runtime.startSupervisor([Mail])
      const outcomes = yield* Runtime.outcomesOf(s, 1)
      expect(outcomes.map((o) => o.outcome)).toEqual(["failed"])
      expect((yield* getTask(raw.id)).task).toMatchObject({ status: "failed", attempt: 1, lastError: { tag: "PayloadInvalid", classification: "permanent" } })
      const [dl] = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.dead_letters where task_id = ${raw.id}::uuid`
      expect(dl?.n).toBe(1)
    }).pipe(Effect.scoped))
})
