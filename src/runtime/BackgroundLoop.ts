/**
 * The runtime's background duties — dispatcher, heartbeat, reaper, progress
 * flusher, completion writer, listeners — are loops of steps, and they survive
 * failure the same way: a step that fails or dies (a defect included) is logged with
 * its cause, and the loop goes on after a pause, 100 ms doubling to 10 s while steps
 * keep failing, back to none after a step that succeeds. Only an interruption ends a
 * loop. Containing one item's failure inside a step (one task's progress, one
 * completion callback) is the step's own business, so that a bad item never costs
 * the others their turn.
 */
import { Cause, Duration, Effect, Exit, Scope } from "effect"

/** Longest pause after failed steps. */
const maxPause = Duration.seconds(10)

const pauseAfter = (failures: number): Duration.Duration =>
  Duration.min(Duration.millis(100 * 2 ** Math.min(failures - 1, 16)), maxPause)

/** Options of {@link run}. */
export interface LoopOptions {
  /** Pause after each step that succeeded (default: none). */
  readonly every?: Duration.Duration
  /** Called after each step that failed, before the pause (tests observe restarts). */
  readonly onFailure?: (cause: Cause.Cause<unknown>) => void
}

/** Runs `step` for ever (see module doc); `name` says which loop in its logs. */
export const run = <R>(name: string, step: Effect.Effect<unknown, unknown, R>, options: LoopOptions = {}): Effect.Effect<never, never, R> =>
  Effect.gen(function*() {
    let failures = 0
    while (true) {
      const exit = yield* Effect.exit(step)
      if (Exit.isSuccess(exit)) {
        failures = 0
        if (options.every !== undefined) yield* Effect.sleep(options.every)
        continue
      }
      // Interrupted: the loop's scope is closing.
      if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.interrupt
      failures++
      options.onFailure?.(exit.cause)
      yield* Effect.logError(`${name} failed; it goes on`, exit.cause)
      yield* Effect.sleep(pauseAfter(failures))
    }
  })

/** {@link run} in a fiber of `scope`, interruptible, until the scope closes. */
export const fork = <R>(name: string, step: Effect.Effect<unknown, unknown, R>, scope: Scope.Scope, options: LoopOptions = {}) =>
  Effect.forkIn(Effect.interruptible(run(name, step, options)), scope)

/**
 * Runs a synchronous callback of a shared loop (an item's `done`); a throw is
 * logged by the caller's `report` and goes no further.
 */
export const callSafely = (f: () => void, report: (error: unknown) => void): void => {
  try {
    f()
  } catch (error) {
    try {
      report(error)
    } catch {
      // Nothing more can be done without risking the loop.
    }
  }
}
