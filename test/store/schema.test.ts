/**
 * The database enforces the state machine and the time order by itself: these
 * tests write raw SQL, bypassing TaskStore, and expect PostgreSQL to refuse.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { allowedTransitions, TaskStatuses } from "../../src/domain/TaskStatus.ts"
import { fromUnknown } from "../../src/store/DatabaseError.ts"
import { transaction } from "../../src/store/Transaction.ts"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as PgTaskStore from "../../src/store/PgTaskStore.ts"
import * as TestDatabase from "../support/TestDatabase.ts"
import { Layer } from "effect"

const Env = PgTaskStore.layer.pipe(Layer.provideMerge(TestDatabase.layer()))

/** Enqueues one task on its own queue and returns its id. */
const newTask = (queue: string) =>
  Effect.flatMap(TaskStore.TaskStore, (s) => s.enqueue({ type: "t", queue })).pipe(Effect.map((r) => r.id))

const rawError = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flip(effect).pipe(Effect.map((e) => fromUnknown(e)))

it.layer(Env, { timeout: 60_000 })("schema", (it) => {
  it.effect("the task_status enum equals the TypeScript TaskStatuses, in order", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* sql<{ v: string }>`select unnest(enum_range(null::taskfiber.task_status))::text as v`
      expect(rows.map((r) => r.v)).toEqual([...TaskStatuses])
    }))

  it.effect("the database's transition table equals the domain's allowedTransitions", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* sql<{ f: string; t: string }>`
        select f::text as f, t::text as t
        from unnest(enum_range(null::taskfiber.task_status)) f,
             unnest(enum_range(null::taskfiber.task_status)) t
        where taskfiber.transition_allowed(f, t) order by 1, 2`
      const db = rows.map((r) => `${r.f}->${r.t}`).sort()
      const ts = allowedTransitions.map(([f, t]) => `${f}->${t}`).sort()
      expect(db).toEqual(ts)
    }))

  it.effect("a forbidden move by raw SQL is rejected by the database (TF001)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const id = yield* newTask("raw-forbidden")
      const error = yield* rawError(sql`update taskfiber.tasks set status = 'succeeded' where id = ${id}::uuid`)
      expect(error?.sqlstate).toBe("TF001")
      expect(error?.category).toBe("constraint")
      expect(error?.constraintKind).toBe("state_machine")
      expect(error?.message).toContain("queued -> succeeded")
      // A task is never created in another status either.
      const insert = yield* rawError(sql`insert into taskfiber.tasks (type, status) values ('t', 'running')`)
      expect(insert?.sqlstate).toBe("TF001")
      const [row] = yield* sql<{ status: string }>`select status::text from taskfiber.tasks where id = ${id}::uuid`
      expect(row?.status).toBe("queued")
    }))

  // A client raises taskfiber.hot_path (the setting the enqueue, claim and
  // completion raise to skip the per-row trigger) and moves a cancelled task to
  // running. The statement trigger checks every row of a hot-path statement.
  it.effect("taskfiber.hot_path cannot be forged: a raw write under it is refused unless it is a hot move done right", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const store = yield* TaskStore.TaskStore
      const id = yield* newTask("hot-forge")
      yield* store.cancel([id], "cancelled")
      const underHotPath = <A, E, R>(statement: Effect.Effect<A, E, R>) =>
        rawError(transaction(Effect.andThen(sql`select set_config('taskfiber.hot_path', 'on', true)`, statement), { retry: false }))
      const revived = yield* underHotPath(sql`
        update taskfiber.tasks set status = 'running', revision = revision + 1, attempt = attempt + 1,
               worker_id = 'forger', lease_expires_at = now() + interval '1 minute'
         where id = ${id}::uuid`)
      expect(revived?.sqlstate).toBe("TF001")
      expect(revived?.message).toContain("cancelled -> running")
      // A status left alone, bookkeeping rewritten: refused too.
      const queued = yield* newTask("hot-forge-2")
      const attempts = yield* underHotPath(sql`update taskfiber.tasks set attempt = 7 where id = ${queued}::uuid`)
      expect(attempts?.sqlstate).toBe("TF001")
      // A claim that does not count its attempt: refused.
      const uncounted = yield* underHotPath(sql`
        update taskfiber.tasks set status = 'running', revision = revision + 1, worker_id = 'forger',
               lease_expires_at = now() + interval '1 minute'
         where id = ${queued}::uuid`)
      expect(uncounted?.sqlstate).toBe("TF001")
      // An insert of a task that is not fresh.
      const inserted = yield* underHotPath(sql`insert into taskfiber.tasks (type, status) values ('t', 'succeeded')`)
      expect(inserted?.sqlstate).toBe("TF001")
      const [row] = yield* sql<{ status: string; attempt: number }>`select status::text, attempt from taskfiber.tasks where id = ${id}::uuid`
      expect(row).toEqual({ status: "cancelled", attempt: 0 })
      // The real hot path still passes.
      const [claimed] = yield* store.claim({ workerId: "w", queues: ["hot-forge-2"], limit: 1, leaseMs: 60_000 })
      expect(yield* store.complete("w", [{ id: queued, revision: claimed!.revision, result: 1 }])).toEqual([{ id: queued, revision: claimed!.revision }])
    }))

  it.effect("failed -> queued is refused to raw SQL and allowed only through replay", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const store = yield* TaskStore.TaskStore
      const id = yield* newTask("raw-replay")
      const [claim] = yield* store.claim({ workerId: "w", queues: ["raw-replay"], limit: 1, leaseMs: 60_000 })
      yield* store.fail("w", claim!, { tag: "Boom", message: "boom", classification: "permanent" })
      const error = yield* rawError(sql`update taskfiber.tasks set status = 'queued' where id = ${id}::uuid`)
      expect(error?.constraintKind).toBe("state_machine")
      expect(error?.message).toContain("replay")
      const replayed = yield* store.replay(id)
      expect(replayed._tag === "Some" && replayed.value.status).toBe("queued")
      expect(replayed._tag === "Some" && replayed.value.attempt).toBe(0)
      // The replay flag does not leak into later statements of the transaction.
      const again = yield* rawError(transaction(Effect.gen(function*() {
        const [first] = yield* store.claim({ workerId: "w", queues: ["raw-replay"], limit: 1, leaseMs: 60_000 })
        yield* store.fail("w", first!, { tag: "Boom", message: "boom", classification: "permanent" })
        yield* store.replay(id)
        const [second] = yield* store.claim({ workerId: "w", queues: ["raw-replay"], limit: 1, leaseMs: 60_000 })
        yield* store.fail("w", second!, { tag: "Boom", message: "boom", classification: "permanent" })
        yield* sql`update taskfiber.tasks set status = 'queued' where id = ${id}::uuid`
      }), { retry: false }))
      expect(again?.constraintKind).toBe("state_machine")
    }))

  it.effect("a task that starts and finishes within the same millisecond keeps ordered timestamps", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      // One server-side call per task: enqueue, claim and complete run through the
      // stored functions microseconds apart, inside one transaction where now() is
      // frozen, so only the trigger's clock_timestamp() keeps the order.
      // Loops until one task was created and finished within one millisecond
      // (bounded), so the case is exercised however loaded the machine is. A queue
      // per task: in one transaction no claimed row's index entry can be marked
      // dead, so claims on one queue would slow down with every iteration.
      yield* sql`
        do $$
        declare i int; tid uuid; rev int; hit boolean := false;
        begin
          for i in 1..5000 loop
            select id into tid from taskfiber.enqueue(jsonb_build_array(jsonb_build_object(
              'id', gen_random_uuid(), 'type', 't', 'queue', 'same-ms-' || i)));
            select revision into rev from taskfiber.claim('w', array['same-ms-' || i], 1, 60000, 60, 2000);
            perform taskfiber.complete_tasks('w', jsonb_build_array(jsonb_build_object('id', tid, 'revision', rev, 'result', null)));
            select date_trunc('milliseconds', created_at) = date_trunc('milliseconds', finished_at) into hit
              from taskfiber.tasks where id = tid;
            exit when hit and i >= 50;
          end loop;
        end $$`
      const ids = (yield* sql<{ id: string }>`select id from taskfiber.tasks where queue like 'same-ms-%'`).map((r) => r.id)
      const rows = yield* sql<{ ordered: boolean; same_ms: boolean }>`
        select created_at <= started_at and started_at <= finished_at as ordered,
               date_trunc('milliseconds', created_at) = date_trunc('milliseconds', finished_at) as same_ms
        from taskfiber.tasks where id = any(${ids}::uuid[])`
      expect(rows.length).toBeGreaterThanOrEqual(50)
      expect(rows.every((r) => r.ordered)).toBe(true)
      expect(rows.some((r) => r.same_ms)).toBe(true)
    }))

  it.effect("timestamps written by hand are replaced by the database clock, never reordered", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const id = yield* newTask("hand-timestamps")
      yield* sql`update taskfiber.tasks set created_at = '2999-01-01', started_at = '1999-01-01' where id = ${id}::uuid`
      const [row] = yield* sql<{ created: Date; started: Date | null; year: number }>`
        select created_at as created, started_at as started, extract(year from created_at)::int as year
        from taskfiber.tasks where id = ${id}::uuid`
      expect(row?.started).toBeNull()
      expect(row?.year).toBeLessThan(2999)
      // The CHECK constraints hold even against a trigger-less write.
      const check = yield* rawError(transaction(Effect.gen(function*() {
        yield* sql`alter table taskfiber.tasks disable trigger tasks_before_write`
        yield* sql`update taskfiber.tasks set finished_at = created_at - interval '1 second' where id = ${id}::uuid`
      }), { retry: false }))
      expect(check?.constraintKind).toBe("check")
      expect(check?.constraint).toBe("tasks_finished_after_created")
    }))

  it.effect("task_events is append-only, yet goes with its task when the task is deleted", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const id = yield* newTask("append-only")
      const update = yield* rawError(sql`update taskfiber.task_events set attempt = 9 where task_id = ${id}::uuid`)
      expect(update?.sqlstate).toBe("TF002")
      expect(update?.constraintKind).toBe("append_only")
      const del = yield* rawError(sql`delete from taskfiber.task_events where task_id = ${id}::uuid`)
      expect(del?.sqlstate).toBe("TF002")
      yield* sql`delete from taskfiber.tasks where id = ${id}::uuid`
      const [left] = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.task_events where task_id = ${id}::uuid`
      expect(left?.n).toBe(0)
    }))

  // schema/functions/history.sql: the completion of removeOnComplete tasks skips the
  // history delete when no deleted task has_events, so the mark must follow every
  // history write.
  it.effect("a removeOnComplete task is marked has_events by any status change off the hot path, and stays marked", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const store = yield* TaskStore.TaskStore
      const marks = (id: string) =>
        sql<{ has: boolean; events: number }>`
          select t.has_events as has, (select count(*)::int from taskfiber.task_events e where e.task_id = t.id) as events
            from taskfiber.tasks t where t.id = ${id}::uuid`.pipe(Effect.map((rows) => rows[0]))
      const [lean, other] = yield* store.enqueueMany([
        { type: "t", queue: "marks", removeOnComplete: true },
        { type: "t", queue: "marks", removeOnComplete: true }
      ])
      // Hot path (enqueue, claim): no history, no mark.
      yield* store.claim({ workerId: "w-marks", queues: ["marks"], limit: 2, leaseMs: 60_000 })
      expect(yield* marks(lean!.id)).toEqual({ has: false, events: 0 })
      // A lease renewal changes no status: no history, no mark.
      yield* sql`update taskfiber.tasks set lease_expires_at = now() + interval '1 minute' where id = ${lean!.id}::uuid`
      expect(yield* marks(lean!.id)).toEqual({ has: false, events: 0 })
      // Raw SQL moves it (running → retrying): its event, and the mark.
      yield* sql`update taskfiber.tasks set status = 'retrying' where id = ${lean!.id}::uuid`
      expect(yield* marks(lean!.id)).toEqual({ has: true, events: 1 })
      // Cannot be unmarked; deleting the task deletes its history.
      yield* sql`update taskfiber.tasks set has_events = false where id = ${lean!.id}::uuid`
      expect(yield* marks(lean!.id)).toEqual({ has: true, events: 1 })
      yield* sql`delete from taskfiber.tasks where id = any(${[lean!.id, other!.id]}::uuid[])`
      const [left] = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.task_events where task_id = ${lean!.id}::uuid`
      expect(left?.n).toBe(0)
    }))

  it.effect("every status change appends one task_events row in the same statement", () =>
    Effect.gen(function*() {
      const store = yield* TaskStore.TaskStore
      const id = yield* newTask("events")
      const [first] = yield* store.claim({ workerId: "w1", queues: ["events"], limit: 1, leaseMs: 60_000 })
      yield* store.retry("w1", first!, { tag: "Flaky", message: "try again", classification: "transient" }, 0)
      const [second] = yield* store.claim({ workerId: "w2", queues: ["events"], limit: 1, leaseMs: 60_000 })
      yield* store.recordProgress("w2", second!, { progress: { pct: 50 } })
      yield* store.extendLeases("w2", 60_000, [second!])
      yield* store.complete("w2", [{ id, revision: second!.revision, result: { ok: true } }])
      const got = yield* store.get(id)
      expect(got._tag).toBe("Some")
      if (got._tag !== "Some") return
      expect(got.value.events.map((e) => [e.seq, e.from, e.to, e.attempt, e.workerId])).toEqual([
        [1, null, "queued", 0, null],
        [2, "queued", "running", 1, "w1"],
        [3, "running", "retrying", 1, "w1"],
        [4, "retrying", "running", 2, "w2"],
        [5, "running", "succeeded", 2, "w2"]
      ])
      expect(got.value.events[2]?.error).toEqual({ tag: "Flaky", message: "try again", classification: "transient" })
      const ats = got.value.events.map((e) => e.at.getTime())
      expect([...ats].sort((a, b) => a - b)).toEqual(ats)
    }))

  // A cached plan made once for a large statement carried JIT into every later call
  // of that connection (370 ms per status change, see schema/functions/history.sql).
  it.effect("the functions that write tasks never JIT-compile their statements", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* sql<{ name: string; jit: boolean }>`
        select p.proname as name, coalesce('jit=off' = any(p.proconfig), false) as jit
          from pg_proc p
         where p.pronamespace = 'taskfiber'::regnamespace
           and p.proname in ('tasks_after_insert', 'tasks_after_update', 'tasks_after_delete', 'tasks_mark_events', 'claim',
                             'enqueue', 'complete_tasks', 'cancel_tasks', 'release_tasks', 'reap_expired', 'extend_leases')
         order by p.proname`
      expect(rows).toHaveLength(11)
      expect(rows.filter((r) => !r.jit).map((r) => r.name)).toEqual([])
    }))

  // A connection whose first claim moved one task planned the trigger's join of
  // its transition tables as a nested loop, kept for the session: every later
  // claim of 500 compared 500 × 500 rows (see schema/functions/history.sql).
  it.effect("the status-change trigger never plans its transition tables' join as a nested loop", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const rows = yield* sql<{ config: ReadonlyArray<string> | null }>`
        select p.proconfig as config from pg_proc p
         where p.pronamespace = 'taskfiber'::regnamespace and p.proname = 'tasks_after_update'`
      expect(rows).toHaveLength(1)
      expect(rows[0]?.config).toContain("enable_nestloop=off")
    }))

  // The claim and the completion take the trigger's short path (005); the retry
  // takes the general one. Both must relay the same status events.
  it.effect("with the outbox on, every status change also writes its event to the outbox", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const store = yield* TaskStore.TaskStore
      yield* sql`update taskfiber.settings set outbox_topic = 'task-status'`
      const id = yield* newTask("outbox")
      const [first] = yield* store.claim({ workerId: "w1", queues: ["outbox"], limit: 1, leaseMs: 60_000 })
      yield* store.retry("w1", first!, { tag: "Flaky", message: "again", classification: "transient" }, 0)
      const [second] = yield* store.claimToRun({ workerId: "w2", queues: ["outbox"], limit: 1, leaseMs: 60_000, asyncCommit: true })
      yield* store.complete("w2", [{ id, revision: second!.revision, result: { ok: 1 } }])
      const rows = yield* sql<{ topic: string; key: string; payload: { from: string | null; to: string; attempt: number; result: unknown } }>`
        select topic, key, payload from taskfiber.outbox where key = ${id} order by id`
      expect(rows.map((r) => [r.topic, r.key, r.payload.from, r.payload.to, r.payload.attempt])).toEqual([
        ["task-status", id, null, "queued", 0],
        ["task-status", id, "queued", "running", 1],
        ["task-status", id, "running", "retrying", 1],
        ["task-status", id, "retrying", "running", 2],
        ["task-status", id, "running", "succeeded", 2]
      ])
      expect(rows[4]?.payload.result).toEqual({ ok: 1 })
    }).pipe(Effect.ensuring(Effect.orDie(Effect.flatMap(SqlClient, (sql) => sql`update taskfiber.settings set outbox_topic = null`)))))
})
