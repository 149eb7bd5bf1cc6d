/**
 * Work a worker does the first time it finds nothing to claim and holds no task:
 * the port through which the Database layer's deferred connection warm-up (see
 * store/Warmup) reaches the dispatcher without the runtime knowing of pools. A
 * runtime without it does nothing when idle.
 */
import { Context, type Effect } from "effect"

/** The idle hook. */
export class IdleWork extends Context.Service<IdleWork, {
  /** Runs once; later calls return at once. Never fails (its failures are its own to log). */
  readonly run: Effect.Effect<void>
}>()("taskfiber/IdleWork") {}
