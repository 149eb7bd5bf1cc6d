/**
 * Batched completion on a real PostgreSQL: how completions are grouped into
 * statements. The store is the real one; the test only records the size of each
 * completion statement and, where it needs a statement held in flight, makes it
 * wait for a gate before it is sent.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as StoredJson from "../../src/domain/StoredJson.ts"
import type { Claim } from "../../src/domain/Task.ts"
import * as Completer from "../../src/runtime/Completer.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

/** Claims `n` fresh tasks of `queue` for `workerId`; returns the claims. */
const claimed = (queue: string, workerId: string, n: number) =>
  Effect.gen(function*() {
    const store = yield* TaskStore
    yield* store.enqueueMany(Array.from({ length: n }, () => ({ type: "noop", queue })))
    const tasks = yield* store.claim({ workerId, queues: [queue], limit: n, leaseMs: 60_000 })
    expect(tasks.length).toBe(n)
    return tasks.map((t): Claim => ({ id: t.id, revision: t.revision }))
  })

/** A completer over the real store that records each statement's size; `gate` holds statements until opened. */
const recordingCompleter = (workerId: string, maxBatch: number, gate?: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const store = yield* TaskStore
    const statements: Array<number> = []
    const recording: TaskStore["Service"] = {
      ...store,
      complete: (w, items) =>
        Effect.suspend(() => {
          statements.push(items.length)
          return gate === undefined ? store.complete(w, items) : Effect.andThen(Deferred.await(gate), store.complete(w, items))
        })
    }
    const completer = yield* Completer.make({ store: recording, workerId, maxBatch, scope: yield* Effect.scope })
    return { completer, statements }
  })

/** Pushes every claim in one synchronous step; resolves with the failures reported (undefined: committed). */
const pushAll = (completer: Completer.Completer, ids: ReadonlyArray<Claim>) =>
  Effect.gen(function*() {
    const reported = yield* Deferred.make<ReadonlyArray<unknown>>()
    const failures: Array<unknown> = []
    yield* Effect.sync(() => {
      for (const id of ids) {
        completer.push(id, new StoredJson.EncodedJson(JSON.stringify({ ok: id.id })), false, (failure) => {
          failures.push(failure)
          if (failures.length === ids.length) Deferred.doneUnsafe(reported, Effect.succeed(failures))
        })
      }
    })
    return reported
  })

/** Resumes after the current macrotask (the completer's writer waits one before each batch). */
const macrotask = Effect.callback<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

const statusesOf = (claims: ReadonlyArray<Claim>) =>
  Effect.gen(function*() {
    const store = yield* TaskStore
    const statuses = new Set<string>()
    for (const { id } of claims) {
      const found = yield* store.get(id)
      statuses.add(found._tag === "Some" ? found.value.task.status : "gone")
    }
    return [...statuses]
  })

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("Completer", (it) => {
  it.effect("completions pushed in the same round share one statement", () =>
    Effect.gen(function*() {
      const ids = yield* claimed("completer-round", "w-round", 40)
      const { completer, statements } = yield* recordingCompleter("w-round", 500)
      const failures = yield* Deferred.await(yield* pushAll(completer, ids))
      expect(failures.every((f) => f === undefined)).toBe(true)
      expect(statements).toEqual([40])
      expect(yield* statusesOf(ids)).toEqual(["succeeded"])
    }).pipe(Effect.scoped))

  it.effect("one statement in flight: completions pushed while it commits form the next one", () =>
    Effect.gen(function*() {
      const ids = yield* claimed("completer-flight", "w-flight", 12)
      const gate = yield* Deferred.make<void>()
      const { completer, statements } = yield* recordingCompleter("w-flight", 500, gate)
      // Should an assertion fail with the gate shut, open it before the writer's scope closes.
      yield* Effect.addFinalizer(() => Deferred.succeed(gate, undefined))
      const first = yield* pushAll(completer, ids.slice(0, 5))
      // The first statement is built and waits at the gate; none other starts.
      while (statements.length === 0) yield* Effect.yieldNow
      const second = yield* pushAll(completer, ids.slice(5, 9))
      const third = yield* pushAll(completer, ids.slice(9))
      // Long enough for a second writer, had there been one, to take them.
      for (let i = 0; i < 5; i++) yield* macrotask
      expect(statements).toEqual([5])
      yield* Deferred.succeed(gate, undefined)
      for (const d of [first, second, third]) {
        expect((yield* Deferred.await(d)).every((f) => f === undefined)).toBe(true)
      }
      expect(statements).toEqual([5, 7])
      expect(yield* statusesOf(ids)).toEqual(["succeeded"])
    }).pipe(Effect.scoped))

  it.effect("a backlog larger than the batch limit is written in statements of at most that many", () =>
    Effect.gen(function*() {
      const ids = yield* claimed("completer-limit", "w-limit", 25)
      const { completer, statements } = yield* recordingCompleter("w-limit", 10)
      const failures = yield* Deferred.await(yield* pushAll(completer, ids))
      expect(failures.every((f) => f === undefined)).toBe(true)
      expect(statements).toEqual([10, 10, 5])
      expect(yield* statusesOf(ids)).toEqual(["succeeded"])
    }).pipe(Effect.scoped))

  it.effect("a shutdown with a statement in flight waits for its commit and reports every task of it", () =>
    Effect.gen(function*() {
      const ids = yield* claimed("completer-close", "w-close", 6)
      const gate = yield* Deferred.make<void>()
      const scope = yield* Scope.make()
      const { completer, statements } = yield* recordingCompleter("w-close", 500, gate).pipe(Scope.provide(scope))
      const reported = yield* pushAll(completer, ids)
      while (statements.length === 0) yield* Effect.yieldNow
      // Closing the scope interrupts the writer; it holds a batch, so it finishes it first.
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      for (let i = 0; i < 5; i++) yield* macrotask
      expect(closing.pollUnsafe()).toBeUndefined() // still waiting for the statement
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.await(closing)
      expect((yield* Deferred.await(reported)).every((f) => f === undefined)).toBe(true)
      expect(yield* statusesOf(ids)).toEqual(["succeeded"])
    }))
})
