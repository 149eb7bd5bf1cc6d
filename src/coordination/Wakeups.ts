/**
 * "Tasks became ready": the port through which the dispatcher hears that a claim
 * may find something, instead of polling. PostgreSQL's LISTEN/NOTIFY serves it
 * (PgWakeups).
 *
 * Delivery is a hint, never the truth: a wake-up may be lost with a connection,
 * so every (re)subscription also reports "anything may be ready" (`undefined`),
 * and the dispatcher keeps its own timer for the next `run_at` and a slow re-check.
 */
import { Context, Effect, Layer, type Scope } from "effect"

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

/**
 * No wake-ups: each subscription reports "any queue" once, then nothing. The
 * dispatcher's own timers (the next `run_at`, the idle re-check) and the ends of
 * its jobs drive it: for a runtime whose store is not PostgreSQL (the runtime
 * benchmark's in-memory store, whose tasks all exist before it starts).
 */
export const layerNone: Layer.Layer<Wakeups> = Layer.succeed(
  Wakeups,
  Wakeups.of({ subscribe: (onReady) => Effect.sync(() => onReady(undefined)) })
)
