/**
 * transaction() on a real PostgreSQL: commit, rollback (failure, interruption),
 * savepoints, isolation, a statement timeout that ends with the transaction, and
 * retries of real deadlocks and serialization failures. The layer runs with the
 * live clock (excludeTestServices): the retry Schedule sleeps for real.
 */
import { expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Option, Redacted, Ref } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { fromUnknown } from "../../src/store/DatabaseError.ts"
import { isRetryableConflict, transaction, type TransactionOptions } from "../../src/store/Transaction.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

let tables = 0
/** A table of its own for each test: accounts 1 and 2 holding 100, never below 0. */
const accounts = Effect.gen(function*() {
  const sql = yield* SqlClient
  const table = sql(`acct_${++tables}`)
  yield* sql`create table ${table} (id int primary key, balance int not null constraint non_negative check (balance >= 0))`
  yield* sql`insert into ${table} values (1, 100), (2, 100)`
  return {
    balances: Effect.map(sql<{ balance: number }>`select balance from ${table} order by id`, (rows) => rows.map((r) => r.balance)),
    read: (id: number) => Effect.map(sql<{ balance: number }>`select balance from ${table} where id = ${id}`, (rows) => rows[0]!.balance),
    set: (id: number, balance: number) => sql`update ${table} set balance = ${balance} where id = ${id}`,
    add: (id: number, amount: number) => sql`update ${table} set balance = balance + ${amount} where id = ${id}`
  }
})

/** The error of a failed exit, classified. */
const databaseError = (exit: Exit.Exit<unknown, unknown>) => fromUnknown(Option.getOrUndefined(Exit.findErrorOption(exit)))

/**
 * Two transfers (10 from 1 to 2, 30 from 2 to 1) that lock the rows in opposite
 * order and wait for each other on their first run only: a real deadlock, which
 * PostgreSQL breaks by aborting one. Returns each transfer's exit and run count.
 */
const deadlockingTransfers = (options: TransactionOptions) =>
  Effect.gen(function*() {
    const { add, balances } = yield* accounts
    const a = yield* Deferred.make<void>()
    const b = yield* Deferred.make<void>()
    const transfer = (from: number, to: number, amount: number, mine: Deferred.Deferred<void>, theirs: Deferred.Deferred<void>) =>
      Effect.gen(function*() {
        const runs = yield* Ref.make(0)
        const exit = yield* Effect.exit(transaction(Effect.gen(function*() {
          const run = yield* Ref.updateAndGet(runs, (n) => n + 1)
          yield* add(from, -amount)
          if (run === 1) { // both hold their first row before either asks for the second
            yield* Deferred.succeed(mine, undefined)
            yield* Deferred.await(theirs)
          }
          yield* add(to, amount)
        }), options))
        return { exit, runs: yield* Ref.get(runs) }
      })
    const results = yield* Effect.all([transfer(1, 2, 10, a, b), transfer(2, 1, 30, b, a)], { concurrency: 2 })
    return { results, balances: yield* balances }
  })

/**
 * A transaction doubles account 1 from what it read; on its first run another
 * commits +50 between its read and its write (a lost update, which repeatable read
 * and serializable refuse with 40001).
 */
const lostUpdate = (options: TransactionOptions) =>
  Effect.gen(function*() {
    const { add, balances, read, set } = yield* accounts
    const runs = yield* Ref.make(0)
    const hasRead = yield* Deferred.make<void>()
    const written = yield* Deferred.make<void>()
    const [exit] = yield* Effect.all([
      Effect.exit(transaction(Effect.gen(function*() {
        const run = yield* Ref.updateAndGet(runs, (n) => n + 1)
        const balance = yield* read(1)
        if (run === 1) {
          yield* Deferred.succeed(hasRead, undefined)
          yield* Deferred.await(written)
        }
        yield* set(1, balance * 2)
        return run
      }), options)),
      Effect.andThen(Deferred.await(hasRead), Effect.andThen(add(1, 50), Deferred.succeed(written, undefined)))
    ], { concurrency: 2 })
    return { exit, runs: yield* Ref.get(runs), balances: yield* balances }
  })

/** A second pool on the same database with ONE connection: every statement meets the same session. */
const singleConnection = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [row] = yield* sql<{ db: string }>`select current_database() as db`
  const url = TestDatabase.urlForDatabase(TestDatabase.serverUrl(), row!.db)
  return Context.get(yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })), SqlClient)
})

it.layer(TestDatabase.layer(), { timeout: 60_000, excludeTestServices: true })("Transaction", (it) => {
  it.effect("commits on success and returns the result", () =>
    Effect.gen(function*() {
      const { add, balances } = yield* accounts
      expect(yield* transaction(Effect.as(Effect.andThen(add(1, 5), add(2, -5)), "done"))).toBe("done")
      expect(yield* balances).toEqual([105, 95])
    }))

  it.effect("rolls back on failure; a failure that is not a conflict is not retried", () =>
    Effect.gen(function*() {
      const { add, balances } = yield* accounts
      const runs = yield* Ref.make(0)
      const counted = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.andThen(Ref.update(runs, (n) => n + 1), effect)
      const own = yield* Effect.flip(transaction(counted(Effect.andThen(add(1, 5), Effect.fail("boom" as const)))))
      expect(own).toBe("boom") // the effect's own error comes out unchanged
      const db = yield* Effect.flip(transaction(counted(Effect.andThen(add(1, 5), add(2, -500)))))
      expect(db).toMatchObject({ _tag: "DatabaseError", category: "constraint", constraintKind: "check", constraint: "non_negative" })
      expect(yield* Ref.get(runs)).toBe(2)
      expect(yield* balances).toEqual([100, 100])
    }))

  it.effect("rolls back on interruption and releases the row lock", () =>
    Effect.gen(function*() {
      const { add, balances } = yield* accounts
      const inside = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(transaction(Effect.gen(function*() {
        yield* add(1, 5)
        yield* Deferred.succeed(inside, undefined)
        return yield* Effect.never
      })))
      yield* Deferred.await(inside)
      yield* Fiber.interrupt(fiber)
      expect(Exit.hasInterrupts(yield* Fiber.await(fiber))).toBe(true)
      expect(yield* balances).toEqual([100, 100])
      // Had the transaction stayed open, this update would wait for its lock and time out.
      yield* transaction(add(1, 1), { statementTimeout: "5 seconds" })
      expect(yield* balances).toEqual([101, 100])
    }))

  it.effect("nested calls are savepoints: a caught inner failure keeps the outer's writes", () =>
    Effect.gen(function*() {
      const { add, balances } = yield* accounts
      yield* transaction(Effect.gen(function*() {
        yield* add(1, 1)
        expect(yield* Effect.flip(transaction(Effect.andThen(add(2, 1), Effect.fail("inner"))))).toBe("inner")
        // A failed statement rolls back to its savepoint: the outer transaction goes on.
        const check = yield* Effect.flip(transaction(add(2, -500)))
        expect(check).toMatchObject({ sqlstate: "23514" })
        yield* transaction(add(2, 2))
      }))
      expect(yield* balances).toEqual([101, 102])
      // An outer failure takes its committed savepoints with it.
      yield* Effect.flip(transaction(Effect.andThen(transaction(add(1, 7)), Effect.fail("outer"))))
      expect(yield* balances).toEqual([101, 102])
    }))

  it.effect("applies the isolation level; a nested call keeps the outer's", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient
      const level = sql<{ l: string }>`select current_setting('transaction_isolation') as l`.pipe(Effect.map((rows) => rows[0]!.l))
      expect(yield* transaction(level, { isolation: "serializable" })).toBe("serializable")
      expect(yield* transaction(level, { isolation: "repeatable read" })).toBe("repeatable read")
      expect(yield* transaction(level)).toBe("read committed")
      expect(yield* transaction(transaction(level, { isolation: "read committed" }), { isolation: "serializable" })).toBe("serializable")
    }))

  it.effect("statementTimeout lasts only as long as the transaction, on the same connection", () =>
    Effect.gen(function*() {
      const sql = yield* singleConnection
      const session = Effect.all({
        timeout: Effect.map(sql.unsafe<{ statement_timeout: string }>("show statement_timeout"), (r) => r[0]!.statement_timeout),
        pid: Effect.map(sql<{ pid: number }>`select pg_backend_pid() as pid`, (r) => r[0]!.pid)
      })
      const inTransaction = (options: TransactionOptions) => transaction(session, options).pipe(Effect.provideService(SqlClient, sql))
      const before = yield* session
      expect(yield* inTransaction({ statementTimeout: "1500 millis" })).toEqual({ timeout: "1500ms", pid: before.pid })
      expect(yield* session).toEqual(before)
      // Also after the timeout fired and the transaction rolled back.
      const timedOut = yield* Effect.flip(transaction(sql`select pg_sleep(2)`, { statementTimeout: "50 millis" }).pipe(Effect.provideService(SqlClient, sql)))
      expect(timedOut).toMatchObject({ category: "timeout", sqlstate: "57014" })
      expect(yield* session).toEqual(before)
      // Beyond PostgreSQL's range: infinite means none, longer is capped.
      expect((yield* inTransaction({ statementTimeout: "Infinity" })).timeout).toBe("0")
      expect((yield* inTransaction({ statementTimeout: "30 days" })).timeout).toBe("2147483647ms")
      expect(yield* session).toEqual(before)
    }))

  it.effect("a real deadlock is retried: both transfers commit, the victim ran twice", () =>
    Effect.gen(function*() {
      const { results, balances } = yield* deadlockingTransfers({})
      expect(results.map((r) => Exit.isSuccess(r.exit))).toEqual([true, true])
      expect(results.map((r) => r.runs).sort()).toEqual([1, 2]) // 3 runs in all
      expect(balances).toEqual([120, 80]) // each transfer applied exactly once
    }))

  it.effect("retry: false surfaces a real deadlock as a DatabaseError", () =>
    Effect.gen(function*() {
      const { results, balances } = yield* deadlockingTransfers({ retry: false })
      expect(results.map((r) => r.runs)).toEqual([1, 1])
      const failed = results.filter((r) => Exit.isFailure(r.exit))
      expect(failed).toHaveLength(1)
      const error = databaseError(failed[0]!.exit)
      expect(error).toMatchObject({ category: "deadlock", sqlstate: "40P01", retryable: true })
      expect(isRetryableConflict(error)).toBe(true)
      expect([[90, 110], [130, 70]]).toContainEqual(balances) // only the survivor's transfer
    }))

  it.effect("a real serialization failure (40001) under serializable is retried and succeeds", () =>
    Effect.gen(function*() {
      const { exit, runs, balances } = yield* lostUpdate({ isolation: "serializable" })
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(runs).toBe(2)
      expect(balances).toEqual([300, 100]) // the retry read the committed 150: no lost update
    }))

  it.effect("retry: false surfaces a real serialization failure as a DatabaseError", () =>
    Effect.gen(function*() {
      const { exit, runs, balances } = yield* lostUpdate({ isolation: "repeatable read", retry: false })
      expect(runs).toBe(1)
      const error = databaseError(exit)
      expect(error).toMatchObject({ category: "serialization", sqlstate: "40001", retryable: true, recovery: "retry" })
      expect(isRetryableConflict(error)).toBe(true)
      expect(balances).toEqual([150, 100]) // only the concurrent +50
    }))
})
