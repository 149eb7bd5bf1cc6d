/**
 * Delivers "cancel task X" to whichever supervisor runs X: a port, so that a bus
 * shared by every instance can serve it. The local bus reaches the supervisors of
 * this process; supervisors of other processes notice a cancellation at their next
 * heartbeat, when the task's claim is no longer theirs.
 */
import { Context, Effect, Layer, PubSub } from "effect"
import type { Scope } from "effect"

/** The cancel bus service. */
export class CancelBus extends Context.Service<CancelBus, {
  readonly publish: (taskId: string) => Effect.Effect<void>
  /** A stream of task ids published from now on: take one with the returned effect. */
  readonly subscribe: Effect.Effect<Effect.Effect<string>, never, Scope.Scope>
}>()("taskfiber/CancelBus") {}

/**
 * In-process delivery. Sliding: a subscriber that falls 1,024 cancellations
 * behind loses the oldest, which its heartbeat then catches (bounded, never
 * blocking the publisher).
 */
export const layerLocal: Layer.Layer<CancelBus> = Layer.effect(
  CancelBus,
  Effect.gen(function*() {
    const hub = yield* PubSub.sliding<string>(1024)
    return CancelBus.of({
      publish: (taskId) => Effect.asVoid(PubSub.publish(hub, taskId)),
      subscribe: Effect.map(PubSub.subscribe(hub), (subscription) => PubSub.take(subscription))
    })
  })
)
