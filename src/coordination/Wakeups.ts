/**
 * "Tasks became ready": the port through which the dispatcher hears that a claim
 * may find something, instead of polling. PostgreSQL's LISTEN/NOTIFY serves it
 * (PgWakeups); the in-process layer here serves a runtime whose tasks never come
 * from another process (benchmarks of the runtime alone, tests of pure logic).
 *
 * Delivery is a hint, never the truth: a wake-up may be lost with a connection,
 * so every (re)subscription also reports "anything may be ready" (`undefined`),
 * and the dispatcher keeps its own timer for the next `run_at` and a slow re-check.
 */
import { Context, Effect, Layer, Scope } from "effect"

/** Called with a queue whose tasks may be ready, or `undefined`: any queue may be. */
export type OnReady = (queue: string | undefined) => void

/** The wake-up port. */
export class Wakeups extends Context.Service<Wakeups, {
  /**
   * Calls `onReady` for every wake-up until the scope closes. Returns once the
   * subscription is live (or its first attempt failed: the caller's re-check
   * covers the gap), so a claim made after it misses no later wake-up.
   */
  readonly subscribe: (onReady: OnReady) => Effect.Effect<void, never, Scope.Scope>
}>()("taskfiber/Wakeups") {}

/** In-process wake-ups: `wake` reaches every subscriber of this layer. */
export interface LocalWakeups {
  readonly wake: (queue: string | undefined) => void
}

/** In-process wake-ups and the function that raises them. */
export const makeLocal = (): Wakeups["Service"] & LocalWakeups => {
  let subscribers: ReadonlyArray<OnReady> = []
  return {
    wake: (queue) => {
      for (const onReady of subscribers) onReady(queue)
    },
    subscribe: (onReady) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          subscribers = [...subscribers, onReady]
          onReady(undefined)
        }),
        () =>
          Effect.sync(() => {
            subscribers = subscribers.filter((s) => s !== onReady)
          })
      )
  }
}

/** In-process wake-ups as a layer. */
export const layerLocal: Layer.Layer<Wakeups> = Layer.sync(Wakeups, makeLocal)
