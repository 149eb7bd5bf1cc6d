/**
 * Outages: what a background duty logs while its steps keep failing. A duty that
 * loses the database fails every step until it is back — each second or so, for
 * as long as the outage lasts — and operators want the outage, not the retries:
 *
 *   first failure of a run     Warn  "reaper: database unreachable: connect ECONNREFUSED …; retrying"
 *   the same failure again     Debug "reaper: still failing (3 failed steps): connect ECONNREFUSED …"
 *   first success after them   Info  "reaper: database reachable again after 12.3 s"
 *
 * A failure that is not a lost connection is a bug, or a fault of the data: it is
 * logged at Error with its whole cause, as before, but once per run of identical
 * failures, not once per step (a changed failure is logged again).
 *
 * The decisions are a pure function ({@link next}) of the tracker's state, the
 * step's result and the clock; {@link make} binds one to a duty. A tracker costs
 * nothing on a step that succeeds while nothing failed: callers ask
 * {@link Tracker.recovered} only after a failed step (BackgroundLoop counts them
 * anyway), and it is a state check otherwise.
 */
import { Cause, Clock, Effect } from "effect"
import { redactSecrets } from "../domain/Redact.ts"
import { fromUnknown, unreachablePrefix } from "../store/DatabaseError.ts"

/** What a failed step says about its failure. */
export type Failure =
  /** The database could not be reached (a connection-category error): an outage. */
  | { readonly _tag: "Unreachable"; readonly reason: string }
  /** Anything else: `key` tells identical failures apart. */
  | { readonly _tag: "Broken"; readonly key: string }

/** The key of every unreachable failure: a refused connect and a closed socket are one outage. */
const unreachableKey = "unreachable"

const keyOf = (failure: Failure) => (failure._tag === "Unreachable" ? unreachableKey : failure.key)

/** A failure value as one line (its message, not its stack). */
const describe = (value: unknown): string => {
  if (value instanceof Error) return `${value.name}: ${value.message}`
  if (typeof value === "object" && value !== null && "_tag" in value) {
    const message = (value as { readonly message?: unknown }).message
    return typeof message === "string" ? `${String(value._tag)}: ${message}` : String(value._tag)
  }
  return String(value)
}

const describeFailure = (failure: Failure) => (failure._tag === "Unreachable" ? failure.reason : failure.key)

/** Classifies a failed step's cause (an interruption is the caller's business). */
export const classify = (cause: Cause.Cause<unknown>): Failure => {
  const error = Cause.squash(cause)
  const database = fromUnknown(error)
  if (database?.category === "connection") {
    const message = database.message.startsWith(unreachablePrefix) ? database.message.slice(unreachablePrefix.length) : database.message
    return { _tag: "Unreachable", reason: redactSecrets(message) }
  }
  return { _tag: "Broken", key: redactSecrets(describe(error)) }
}

/** A tracker's state: healthy, or in a run of failures since `since` (clock milliseconds). */
export type State =
  | { readonly _tag: "Healthy" }
  | {
    readonly _tag: "Failing"
    readonly since: number
    /** Key of the last failure logged. */
    readonly key: string
    /** Whether the database was unreachable at some point of this run. */
    readonly unreachable: boolean
    readonly failures: number
  }

/** The state of a tracker that saw no failure. */
export const healthy: State = { _tag: "Healthy" }

/** What to log after a step. */
export type Decision =
  /** A run of failures began, or its failure changed: Warn (unreachable) or Error with the cause (broken). */
  | { readonly _tag: "Began"; readonly failure: Failure }
  /** The failure logged already, again: Debug. */
  | { readonly _tag: "Repeated"; readonly failures: number }
  /** The first success after a run of failures: Info. */
  | { readonly _tag: "Ended"; readonly millis: number; readonly unreachable: boolean; readonly failures: number }
  /** A success with nothing failing before: nothing. */
  | { readonly _tag: "Quiet" }

/** The step's result: a failure, or success. */
export type Step = Failure | { readonly _tag: "Succeeded" }

/** The decision after `step` at clock time `now`, and the next state (pure). */
export const next = (state: State, step: Step, now: number): readonly [Decision, State] => {
  if (step._tag === "Succeeded") {
    return state._tag === "Healthy"
      ? [{ _tag: "Quiet" }, state]
      : [{ _tag: "Ended", millis: Math.max(0, now - state.since), unreachable: state.unreachable, failures: state.failures }, healthy]
  }
  const key = keyOf(step)
  const unreachable = step._tag === "Unreachable"
  if (state._tag === "Healthy") {
    return [{ _tag: "Began", failure: step }, { _tag: "Failing", since: now, key, unreachable, failures: 1 }]
  }
  const failing = { ...state, key, unreachable: state.unreachable || unreachable, failures: state.failures + 1 }
  return state.key === key ? [{ _tag: "Repeated", failures: failing.failures }, failing] : [{ _tag: "Began", failure: step }, failing]
}

/** Seconds with one decimal: "12.3 s". */
export const formatSeconds = (millis: number): string => `${(millis / 1000).toFixed(1)} s`

/** The tracker of one duty. */
export interface Tracker {
  /** Logs a failed step (not an interruption) as its place in the run of failures says. */
  readonly failed: (cause: Cause.Cause<unknown>) => Effect.Effect<void>
  /** Logs the end of the run of failures, if one was going on. */
  readonly recovered: Effect.Effect<void>
}

/** A tracker for the duty `name` (named in each line it logs). */
export const make = (name: string): Tracker => {
  let state: State = healthy
  const decide = (step: Step) =>
    Effect.map(Clock.currentTimeMillis, (now) => {
      const [decision, after] = next(state, step, now)
      state = after
      return decision
    })
  const failed = Effect.fnUntraced(function*(cause: Cause.Cause<unknown>) {
    const failure = classify(cause)
    const decision = yield* decide(failure)
    switch (decision._tag) {
      case "Began":
        // The reason is the error's message: a stack trace says nothing of an outage.
        return yield* decision.failure._tag === "Unreachable"
          ? Effect.logWarning(`${name}: database unreachable: ${decision.failure.reason}; retrying`)
          : Effect.logError(`${name} failed; it goes on`, cause)
      case "Repeated":
        return yield* Effect.logDebug(`${name}: still failing (${decision.failures} failed steps): ${describeFailure(failure)}`)
      default:
        return
    }
  })
  const recovered = Effect.suspend(() =>
    state._tag === "Healthy"
      ? Effect.void
      : Effect.flatMap(decide({ _tag: "Succeeded" }), (decision) =>
        decision._tag !== "Ended"
          ? Effect.void
          : decision.unreachable
          ? Effect.logInfo(`${name}: database reachable again after ${formatSeconds(decision.millis)}`)
          : Effect.logInfo(`${name} works again after ${formatSeconds(decision.millis)} (${decision.failures} failed steps)`))
  )
  return { failed, recovered }
}
