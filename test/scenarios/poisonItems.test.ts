/**
 * One bad item never costs the others (issue: "one bad item poisons a batch", "a
 * defect in a shared loop"). A result, progress value or checkpoint that jsonb
 * cannot store fails its own task, permanently, with a clear error; the tasks
 * batched with it succeed; the shared loops that write them (completion writer,
 * progress flusher) keep serving every later task; and the scope still closes.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Option, Ref, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const getTask = (id: string) => Effect.flatMap(TaskStore, (s) => s.get(id)).pipe(Effect.map((t) => Option.getOrThrow(t).task))

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("one bad item", (it) => {
  // 30 tasks, PREFETCH=100, one result with U+0000. Unchecked, that value fails the
  // completion statement of the whole batch: all 30 abandoned, re-run, and failed
  // in the end with LeaseExpired.
  it.effect("a result jsonb refuses fails its own task only; the 29 batched with it succeed, each run once", () =>
    Effect.gen(function*() {
      const runs = yield* Ref.make(0)
      const Nul = Job.define({
        name: "nul-result", queue: "poison-batch", payload: Schema.Struct({ bad: Schema.Boolean }),
        run: (p) => Effect.as(Ref.update(runs, (n) => n + 1), p.bad ? { s: "a\u0000b" } : { s: "ok" })
      })
      const ids: Array<string> = []
      for (let i = 0; i < 30; i++) ids.push((yield* Tasks.enqueue(Nul, { bad: i === 17 })).id)
      const s = yield* Runtime.startSupervisor([Nul], { prefetch: 100, claimBatch: 100 })
      const outcomes = yield* Runtime.outcomesOf(s, 30)
      const bad = ids[17]!
      expect(outcomes.filter((o) => o.taskId !== bad).map((o) => o.outcome)).toEqual(Array(29).fill("succeeded"))
      expect(outcomes.find((o) => o.taskId === bad)?.outcome).toBe("failed")
      expect(yield* Ref.get(runs)).toBe(30)
      const failed = yield* getTask(bad)
      expect(failed).toMatchObject({ status: "failed", attempt: 1, lastError: { tag: "UnstorableValue", classification: "permanent" } })
      expect(failed.lastError?.message).toMatch(/result cannot be stored as JSON: .*U\+0000/)
      for (const id of ids.filter((id) => id !== bad)) {
        expect(yield* getTask(id)).toMatchObject({ status: "succeeded", attempt: 1, result: { s: "ok" } })
      }
    }).pipe(Effect.scoped))

  // Before, JSON.stringify threw inside the statement's template, out of reach of
  // the writer's Effect.exit: the writer fiber died, the next good task stayed
  // running (its lease renewed for ever), and closing the scope never finished.
  it.effect("a BigInt or cyclic result fails its task; the next good task succeeds and the scope closes", () =>
    Effect.gen(function*() {
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      const Weird = Job.define({
        name: "weird-result", queue: "poison-encode", payload: Schema.Struct({ kind: Schema.String }),
        run: (p) => Effect.succeed(p.kind === "bigint" ? { n: 1n } : p.kind === "cycle" ? cyclic : { fine: true })
      })
      const scope = yield* Scope.make()
      const s = yield* Runtime.startSupervisor([Weird]).pipe(Scope.provide(scope))
      const big = yield* Tasks.enqueue(Weird, { kind: "bigint" })
      const cycle = yield* Tasks.enqueue(Weird, { kind: "cycle" })
      yield* Runtime.outcomesOf(s, 2)
      const fine = yield* Tasks.enqueue(Weird, { kind: "fine" })
      const [last] = yield* Runtime.outcomesOf(s, 1)
      expect(last).toEqual({ taskId: fine.id, outcome: "succeeded" })
      expect((yield* getTask(big.id)).lastError?.message).toMatch(/result cannot be stored as JSON: .*BigInt/)
      expect((yield* getTask(cycle.id)).lastError).toMatchObject({ tag: "UnstorableValue", classification: "permanent" })
      expect((yield* getTask(fine.id)).result).toEqual({ fine: true })
      const closed = yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutOption(Duration.seconds(10)))
      expect(Option.isSome(closed)).toBe(true)
    }))

  // Before, the shared progress flusher died on `ctx.progress({ n: 1n })` and no
  // task's progress or checkpoint was written from then on.
  it.effect("an unstorable progress value fails the call that made it; every other task's progress is still written", () =>
    Effect.gen(function*() {
      const reported = yield* Deferred.make<void>()
      const Progress = Job.define({
        name: "progress-values", queue: "poison-progress", payload: Schema.Struct({ bad: Schema.Boolean }),
        run: (p, ctx) =>
          p.bad
            ? ctx.progress({ n: 1n })
            : Effect.gen(function*() {
              yield* ctx.saveCheckpoint({ page: 7 })
              yield* ctx.progress({ pct: 50 })
              yield* Deferred.succeed(reported, undefined)
              return "done"
            })
      })
      const s = yield* Runtime.startSupervisor([Progress], { progressInterval: Duration.millis(20) })
      const bad = yield* Tasks.enqueue(Progress, { bad: true })
      const [o] = yield* Runtime.outcomesOf(s, 1)
      expect(o).toEqual({ taskId: bad.id, outcome: "failed" })
      expect((yield* getTask(bad.id)).lastError?.message).toMatch(/progress cannot be stored as JSON: .*BigInt/)
      const good = yield* Tasks.enqueue(Progress, { bad: false })
      yield* Runtime.outcomesOf(s, 1)
      expect(yield* getTask(good.id)).toMatchObject({ status: "succeeded", checkpoint: { page: 7 }, progress: { pct: 50 } })
    }).pipe(Effect.scoped))

  it.effect("a checkpoint with an unpaired surrogate is refused before it is stored; the handler may handle it", () =>
    Effect.gen(function*() {
      const Surrogate = Job.define({
        name: "surrogate-checkpoint", queue: "poison-checkpoint", payload: Schema.Struct({}),
        run: (_, ctx) =>
          ctx.saveCheckpoint({ text: "\uD800" }).pipe(
            Effect.catchTag("UnstorableValue", (e) => Effect.as(ctx.saveCheckpoint({ refused: e.reason }), "handled"))
          )
      })
      const s = yield* Runtime.startSupervisor([Surrogate])
      const { id } = yield* Tasks.enqueue(Surrogate, {})
      yield* Runtime.outcomesOf(s, 1)
      const t = yield* getTask(id)
      expect(t).toMatchObject({ status: "succeeded", result: "handled" })
      expect((t.checkpoint as { refused: string }).refused).toMatch(/unpaired surrogate/)
    }).pipe(Effect.scoped))

  // A value JSON can encode that PostgreSQL still refuses (here: a trigger in the
  // test database raises a data exception, 22023, for one marked result, as a size
  // or depth limit would): the batch is split until that one task stands alone,
  // which fails permanently; every other task of the batch succeeds, once.
  it.effect("a completion statement that fails on one item's value is split until that item alone fails", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      yield* sql`
        create function public.refuse_marked_result() returns trigger language plpgsql as $$
        begin
          raise exception 'this result is refused' using errcode = '22023';
        end $$`
      yield* sql`
        create trigger refuse_marked_result before update on taskfiber.tasks
          for each row when (new.result ? 'refuse-me') execute function public.refuse_marked_result()`
      yield* Effect.addFinalizer(() =>
        Effect.orDie(sql`drop trigger refuse_marked_result on taskfiber.tasks`).pipe(
          Effect.andThen(Effect.orDie(sql`drop function public.refuse_marked_result()`))
        )
      )
      const runs = yield* Ref.make(0)
      const gate = yield* Deferred.make<void>()
      const Marked = Job.define({
        name: "marked-result", queue: "poison-split", payload: Schema.Struct({ refuse: Schema.Boolean }),
        // All forty end together, after the gate: one completion batch.
        run: (p) => Effect.andThen(Deferred.await(gate), Effect.as(Ref.update(runs, (n) => n + 1), p.refuse ? { "refuse-me": 1 } : { ok: 1 }))
      })
      const ids: Array<string> = []
      for (let i = 0; i < 40; i++) ids.push((yield* Tasks.enqueue(Marked, { refuse: i === 25 })).id)
      const s = yield* Runtime.startSupervisor([Marked], { maxConcurrentJobs: 40, claimBatch: 100 })
      yield* Deferred.succeed(gate, undefined)
      const outcomes = yield* Runtime.outcomesOf(s, 40)
      expect(outcomes.filter((o) => o.outcome === "succeeded")).toHaveLength(39)
      expect(outcomes.find((o) => o.taskId === ids[25])?.outcome).toBe("failed")
      expect(yield* Ref.get(runs)).toBe(40)
      expect((yield* getTask(ids[25]!)).lastError?.message).toMatch(/the result could not be stored: .*this result is refused/)
    }).pipe(Effect.scoped))
})
