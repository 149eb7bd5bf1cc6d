/**
 * The runtime's background duties — dispatcher, starter, heartbeat, reaper,
 * progress flusher, canceller, worker registry, completion writer — are loops of
 * steps, and they survive failure the same way: a step that fails or dies (a defect
 * included) is logged, and the loop goes on after a pause, 100 ms doubling to 10 s
 * while steps keep failing, back to none after a step that succeeds. What is
 * logged is the Outages tracker's choice: one line when a run of failures begins
 * (a lost database in one line, anything else with its cause), Debug while it
 * goes on, one line when a step succeeds again. Only an interruption ends a
 * loop. Containing one item's failure inside a step (one task's progress, one
 * completion callback) is the step's own business, so that a bad item never costs
 * the others their turn.
 */
import { Cause, Duration, Effect, Scope } from "effect"
import * as Outages from "../observability/Outages.ts"

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

/**
 * Runs `step` for ever (see module doc); `name` says which loop in its logs. The
 * starter runs a step for about every task a worker runs, so a step costs one
 * continuation here and nothing more (a generator and an `Exit` per step were
 * ~1 µs of a task's 10 in `bench:runtime`).
 */
export const run = <R>(name: string, step: Effect.Effect<unknown, unknown, R>, options: LoopOptions = {}): Effect.Effect<never, never, R> =>
  Effect.suspend(() => {
    let failures = 0
    const outages = Outages.make(name)
    const afterSuccess = options.every === undefined ? Effect.void : Effect.sleep(options.every)
    const recovered = Effect.andThen(outages.recovered, afterSuccess)
    const once = Effect.matchCauseEffect(step, {
      // Only the first success after failures asks the tracker anything.
      onSuccess: () => {
        if (failures === 0) return afterSuccess
        failures = 0
        return recovered
      },
      onFailure: (cause): Effect.Effect<void> => {
        // Interrupted: the loop's scope is closing.
        if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
        failures++
        options.onFailure?.(cause)
        return Effect.andThen(outages.failed(cause), Effect.sleep(pauseAfter(failures)))
      }
    })
    return Effect.forever(once)
  })

/**
 * A background duty (heartbeat, reaper, progress flusher, …): a named step run by
 * {@link start}, each the same way. The maintenance services are made as duties and
 * composed by the supervisor.
 */
export interface Duty {
  readonly name: string
  readonly step: Effect.Effect<unknown, unknown>
  /** Pause after each step that succeeded. */
  readonly every?: Duration.Duration
}

/** Runs `duty` in a fiber of `scope` until the scope closes (or the fiber is interrupted). */
export const start = (duty: Duty, scope: Scope.Scope) =>
  fork(duty.name, duty.step, scope, duty.every === undefined ? {} : { every: duty.every })

/** {@link run} in a fiber of `scope`, interruptible, until the scope closes. */
export const fork = <R>(name: string, step: Effect.Effect<unknown, unknown, R>, scope: Scope.Scope, options: LoopOptions = {}) =>
  Effect.forkIn(Effect.interruptible(run(name, step, options)), scope)
