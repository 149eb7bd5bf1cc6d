/**
 * Using taskfiber's store from an Effect program: enqueue idempotently inside your
 * own transaction, claim by priority, record progress, complete, read the history.
 *
 *   scripts/node.sh npm run example examples/store.ts   # embedded PostgreSQL, or DATABASE_URL
 */
import { Console, Effect, Layer, Option } from "effect"
import { NodeRuntime } from "@effect/platform-node"
import { Database, PgTaskStore, TaskStore, Transaction } from "taskfiber"

export const program = Effect.gen(function*() {
  const store = yield* TaskStore.TaskStore
  const queue = `example-${Date.now()}`

  // Transactional, idempotent enqueue: the dedupe key makes a second call a no-op.
  const first = yield* Transaction.transaction(
    store.enqueue({ type: "send-invoice", queue, payload: { invoice: 42 }, dedupeKey: `${queue}-invoice-42` })
  )
  const again = yield* store.enqueue({ type: "send-invoice", queue, payload: { invoice: 42 }, dedupeKey: `${queue}-invoice-42` })
  yield* store.enqueue({ type: "resize-image", queue, payload: { image: "cat.png" }, priority: 10 })

  // The higher priority task comes first.
  const claimed = yield* store.claim({ workerId: "example-worker", queues: [queue], limit: 10, leaseMs: 30_000 })
  for (const task of claimed) {
    // A claimed task is its own claim (id and revision): the database accepts the
    // run's writes only while that claim still holds the task.
    yield* store.recordProgress("example-worker", task, { progress: { pct: 100 } })
  }
  yield* store.complete("example-worker", claimed.map((t) => ({ id: t.id, revision: t.revision, result: { done: t.type } })))

  const history = Option.getOrThrow(yield* store.get(first.id))
  yield* Console.log(`created: ${first.created}, second enqueue created: ${again.created}`)
  yield* Console.log(`claim order: ${claimed.map((t) => t.type).join(", ")}`)
  yield* Console.log(`history of ${first.id}: ${history.events.map((e) => e.to).join(" -> ")}`)
  return { first, again, claimed: claimed.map((t) => t.type), history: history.events.map((e) => e.to) }
})

/** The store on the configured database (embedded when DATABASE_URL is unset). */
const StoreLive = PgTaskStore.layer.pipe(Layer.provideMerge(Database.layer))

if (import.meta.main) {
  program.pipe(Effect.provide(StoreLive), NodeRuntime.runMain)
}
