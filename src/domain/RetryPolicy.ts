/**
 * Retry policy: how many runs a task gets and how long it waits between them.
 *
 * One formula serves two places: the store computes `run_at` of a retrying
 * task with {@link nextRunAt}, and in-process retries use {@link toSchedule}.
 *
 * **Attempt numbering.** `attempt` is the number of runs started, 1 during the
 * first run. After run `n` fails, the wait before run `n + 1` is
 * `min(maxDelayMs, baseMs * factor^(n-1) * (1 + jitter * u))` for a uniform
 * sample `u` in [0, 1). Jitter only lengthens a delay, so the backoff floor
 * holds exactly, and spreads retries of tasks that failed together.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Random, Schedule, Schema } from "effect"
import { type Classifier, classify, isRetryable } from "./Classification.ts"

const Positive = Schema.Finite.check(Schema.isGreaterThan(0))

/**
 * Schema of a retry policy; decoding validates every field.
 *
 * @since 0.1.0
 */
export const RetryPolicy = Schema.Struct({
  baseMs: Positive,
  factor: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(1)),
  maxDelayMs: Positive,
  maxAttempts: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  jitter: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 }))
})

/**
 * Exponential backoff with proportional jitter, a cap, and a run budget.
 *
 * @since 0.1.0
 */
export interface RetryPolicy {
  /** Delay after the first failed run, before jitter. */
  readonly baseMs: number
  /** Growth of the delay per failed run (>= 1). */
  readonly factor: number
  /** Upper bound of any delay, jitter included. */
  readonly maxDelayMs: number
  /** Runs a task gets in total, the first included (>= 1). */
  readonly maxAttempts: number
  /** Largest fraction added to a delay at random, in [0, 1]. */
  readonly jitter: number
}

/**
 * The defaults: 1 s doubling, capped at 1 hour, 30 % jitter, 25 runs.
 *
 * @since 0.1.0
 */
export const defaults: RetryPolicy = { baseMs: 1000, factor: 2, maxDelayMs: 3_600_000, maxAttempts: 25, jitter: 0.3 }

const decode = Schema.decodeUnknownSync(RetryPolicy)

/**
 * Builds a policy from {@link defaults} and `options`.
 *
 * Policies are configuration, built once at start-up, so an invalid one throws
 * at once: a `SchemaError` whose message names the offending field (for
 * example `Expected a value greater than 0` at `["baseMs"]`).
 *
 * @since 0.1.0
 */
export const exponential = (options: Partial<RetryPolicy> = {}): RetryPolicy => decode({ ...defaults, ...options })

/**
 * A single run and no retry.
 *
 * @since 0.1.0
 */
export const none: RetryPolicy = exponential({ maxAttempts: 1 })

// Shared by `delayMs` and `toSchedule`, so both give the same delays.
const jitterAndCap = (policy: RetryPolicy, rawMs: number, u: number): number => {
  const sample = Math.min(1, Math.max(0, u))
  return Math.min(policy.maxDelayMs, rawMs * (1 + policy.jitter * sample))
}

/**
 * The wait after failed run `attempt` (>= 1; smaller counts as 1) for the
 * random sample `u` in [0, 1), in milliseconds. Ignores `maxAttempts`.
 *
 * @since 0.1.0
 */
export const delayMs = (policy: RetryPolicy, attempt: number, u: number): number =>
  jitterAndCap(policy, policy.baseMs * Math.pow(policy.factor, Math.max(0, attempt - 1)), u)

/**
 * The wait after failed run `attempt`, or `undefined` when the task has used
 * all its runs (`attempt >= maxAttempts`) and must fail.
 *
 * @since 0.1.0
 */
export const nextDelayMs = (policy: RetryPolicy, attempt: number, random: number = Math.random()): number | undefined =>
  attempt >= policy.maxAttempts ? undefined : delayMs(policy, attempt, random)

/**
 * When run `attempt + 1` may start after run `attempt` failed at `now`, or
 * `undefined` when the task is out of attempts.
 *
 * @since 0.1.0
 */
export const nextRunAt = (
  policy: RetryPolicy,
  attempt: number,
  now: Date,
  random: number = Math.random()
): Date | undefined => {
  const delay = nextDelayMs(policy, attempt, random)
  return delay === undefined ? undefined : new Date(now.getTime() + delay)
}

/**
 * The policy as a `Schedule` for `Effect.retry`. Its input is the failure; it
 * recurs while `classifier` calls the failure transient or a timeout, at most
 * `maxAttempts - 1` times, with the delays of {@link delayMs}. Its output is
 * the delay it chose.
 *
 * The jitter sample comes from Effect's `Random` service, so a test can fix it
 * with `Random.withSeed`, and the sleeps go through `Clock`, so `TestClock`
 * drives them.
 *
 * @since 0.1.0
 */
export const toSchedule = (policy: RetryPolicy, classifier: Classifier = classify): Schedule.Schedule<Duration.Duration> =>
  Schedule.exponential(Duration.millis(policy.baseMs), policy.factor).pipe(
    Schedule.while(({ input }) => isRetryable(classifier(input))),
    Schedule.upTo({ times: policy.maxAttempts - 1 }),
    Schedule.modifyDelay(({ duration }) =>
      Effect.map(Random.next, (u) => Duration.millis(jitterAndCap(policy, Duration.toMillis(duration), u)))
    ),
    Schedule.map(({ duration }) => duration)
  )
