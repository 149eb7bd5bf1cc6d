import { expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Database from "../../src/store/Database.ts"
import { warmupQueue } from "../../src/store/Warmup.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const leftovers = (sql: SqlClient) =>
  sql<{ tasks: number; events: number; outbox: number; dead: number }>`
    select (select count(*)::int from taskfiber.tasks) as tasks,
           (select count(*)::int from taskfiber.task_events) as events,
           (select count(*)::int from taskfiber.outbox) as outbox,
           (select count(*)::int from taskfiber.dead_letters) as dead`.pipe(Effect.map((rows) => rows[0]))

const build = (name: string, options: Database.ClientOptions) =>
  Effect.map(
    Layer.build(Database.layerUrl(Redacted.make(TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name)), options)),
    (ctx) => Context.get(ctx, SqlClient)
  )

it.live("the pool keeps poolMin connections open, each warmed by a transaction that leaves nothing behind", () =>
  Effect.gen(function*() {
    const name = yield* TestDatabase.scopedDatabase
    const first = yield* build(name, { poolMax: 2, poolMin: 1 })
    // The outbox on: a committed warm-up would have left status events to relay.
    yield* first`update taskfiber.settings set outbox_topic = 'taskfiber.status'`
    const sql = yield* build(name, { poolMax: 5, poolMin: 3, applicationName: "tf-warm-test" })
    expect(yield* leftovers(sql)).toEqual({ tasks: 0, events: 0, outbox: 0, dead: 0 })
    const open = yield* sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
       where datname = current_database() and application_name = 'tf-warm-test'`
    expect(open[0]?.n).toBeGreaterThanOrEqual(3)
    // The warm-up's own queue holds nothing a claim could ever take.
    const queued = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks where queue = ${warmupQueue}`
    expect(queued[0]?.n).toBe(0)
  }).pipe(Effect.scoped), 30_000)

it.live("a warm-up failing between its statements commits nothing, and the layer is still built", () =>
  Effect.gen(function*() {
    const name = yield* TestDatabase.scopedDatabase
    const first = yield* build(name, { poolMax: 2, poolMin: 1 })
    // The warm-up's enqueue and claim succeed, then its completion fails: the
    // equivalent of a crash between its second and third statement.
    yield* first.unsafe(`
      create or replace function taskfiber.complete_tasks(p_worker text, p_items jsonb)
      returns table (id uuid, revision integer) language plpgsql as $$
      begin
        raise exception 'completion refused for the test';
      end $$`)
    const sql = yield* build(name, { poolMax: 3, poolMin: 2 })
    expect(yield* leftovers(sql)).toEqual({ tasks: 0, events: 0, outbox: 0, dead: 0 })
  }).pipe(Effect.scoped), 30_000)
