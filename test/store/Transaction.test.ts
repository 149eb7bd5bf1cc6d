import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Ref } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import { fromUnknown } from "../../src/store/DatabaseError.ts"
import { transaction } from "../../src/store/Transaction.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

/** A fresh database with a two-row table `acct`. */
const Accounts = Layer.effectDiscard(Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`create table acct (id int primary key, balance int not null)`
  yield* sql`insert into acct values (1, 100), (2, 100)`
})).pipe(Layer.provideMerge(TestDatabase.layer()))

const balances = Effect.flatMap(SqlClient, (sql) =>
  sql<{ id: number; balance: number }>`select id, balance from acct order by id`).pipe(
  Effect.map((rows) => rows.map((r) => r.balance))
)
const add = (id: number, amount: number) =>
  Effect.flatMap(SqlClient, (sql) => sql`update acct set balance = balance + ${amount} where id = ${id}`)

/**
 * Two transfers that lock the two rows in opposite order and meet in the middle
 * on their first run only: a real deadlock, which PostgreSQL breaks by aborting
 * one of them. Returns both outcomes and the number of runs.
 */
const deadlockingTransfers = (options: Parameters<typeof transaction>[1]) =>
  Effect.gen(function*() {
    const runs = yield* Ref.make(0)
    const a = yield* Deferred.make<void>()
    const b = yield* Deferred.make<void>()
    const transfer = (from: number, to: number, mine: Deferred.Deferred<void>, theirs: Deferred.Deferred<void>) =>
      transaction(Effect.gen(function*() {
        const run = yield* Ref.updateAndGet(runs, (n) => n + 1)
        yield* add(from, -10)
        if (run <= 2) { // the first run of each: wait until both hold their first row
          yield* Deferred.succeed(mine, undefined)
          yield* Deferred.await(theirs)
        }
        yield* add(to, 10)
      }), options).pipe(Effect.exit)
    const exits = yield* Effect.all([transfer(1, 2, a, b), transfer(2, 1, b, a)], { concurrency: 2 })
    return { exits, runs: yield* Ref.get(runs) }
  })

it.layer(Accounts, { timeout: 60_000 })("Transaction", (it) => {
  it.effect("commits on success, rolls back on failure and on interruption", () =>
    Effect.gen(function*() {
      yield* transaction(add(1, 5))
      expect(yield* balances).toEqual([105, 100])
      const failed = yield* Effect.exit(transaction(Effect.andThen(add(1, 5), Effect.fail("no"))))
      expect(Exit.isFailure(failed)).toBe(true)
      expect(yield* balances).toEqual([105, 100])
      const inside = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(transaction(Effect.gen(function*() {
        yield* add(1, 5)
        yield* Deferred.succeed(inside, undefined)
        return yield* Effect.never
      })))
      yield* Deferred.await(inside)
      yield* Fiber.interrupt(fiber)
      expect(yield* balances).toEqual([105, 100])
      yield* transaction(add(1, -5))
    }))

  it.effect("nested calls are savepoints: a caught inner failure keeps the outer's writes", () =>
    Effect.gen(function*() {
      yield* transaction(Effect.gen(function*() {
        yield* add(1, 1)
        yield* transaction(Effect.andThen(add(2, 1), Effect.fail("inner"))).pipe(Effect.ignore)
        yield* transaction(add(2, 2))
      }))
      expect(yield* balances).toEqual([101, 102])
      yield* transaction(Effect.andThen(add(1, -1), add(2, -2)))
    }))

  it.effect("applies the isolation level, and the statement timeout only inside", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const level = (isolation: "serializable" | "repeatable read") =>
        transaction(sql<{ l: string }>`select current_setting('transaction_isolation') as l`, { isolation })
      expect((yield* level("serializable"))[0]?.l).toBe("serializable")
      expect((yield* level("repeatable read"))[0]?.l).toBe("repeatable read")
      const inside = yield* transaction(sql<{ t: string }>`select current_setting('statement_timeout') as t`, { statementTimeout: "1500 millis" })
      expect(inside[0]?.t).toBe("1500ms")
      // SET LOCAL ends with the transaction: no pooled connection keeps it.
      const after = yield* Effect.all(Array.from({ length: 6 }, () => sql<{ t: string }>`select current_setting('statement_timeout') as t`), { concurrency: 6 })
      expect(after.every((rows) => rows[0]?.t === "0")).toBe(true)
    }))

  it.effect("without retry, a real deadlock surfaces as a classified DatabaseError", () =>
    Effect.gen(function*() {
      const { exits, runs } = yield* deadlockingTransfers({ retry: false })
      expect(runs).toBe(2)
      const failures = exits.filter(Exit.isFailure)
      expect(failures).toHaveLength(1)
      const error = fromUnknown(Exit.findErrorOption(failures[0]!).pipe(Option.getOrUndefined))
      expect(error?.category).toBe("deadlock")
      expect(error?.sqlstate).toBe("40P01")
      // Exactly one of the two transfers was applied.
      expect([[90, 110], [110, 90]]).toContainEqual(yield* balances)
    }))
})

it.live("a real deadlock is retried by the Schedule and both transactions succeed", () =>
  Effect.gen(function*() {
    const { exits, runs } = yield* deadlockingTransfers({})
    expect(exits.every(Exit.isSuccess)).toBe(true)
    expect(runs).toBe(3) // one of the two ran again
    expect(yield* balances).toEqual([100, 100]) // -10 +10 both ways
  }).pipe(Effect.provide(Accounts)), 60_000)

it.live("a real serialization failure (40001) is retried and succeeds", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient
    const runs = yield* Ref.make(0)
    const read = yield* Deferred.make<void>()
    const written = yield* Deferred.make<void>()
    const [result] = yield* Effect.all([
      transaction(Effect.gen(function*() {
        const run = yield* Ref.updateAndGet(runs, (n) => n + 1)
        const [row] = yield* sql<{ balance: number }>`select balance from acct where id = 1`
        if (run === 1) {
          yield* Deferred.succeed(read, undefined)
          yield* Deferred.await(written) // another transaction changes the row we read
        }
        yield* sql`update acct set balance = ${(row?.balance ?? 0) * 2} where id = 1`
        return run
      }), { isolation: "repeatable read" }),
      Effect.gen(function*() {
        yield* Deferred.await(read)
        yield* add(1, 50)
        yield* Deferred.succeed(written, undefined)
      })
    ], { concurrency: 2 })
    expect(result).toBe(2)
    // The retry saw the committed 150 and doubled it: no lost update.
    expect((yield* balances)[0]).toBe(300)
  }).pipe(Effect.provide(Accounts)), 60_000)
