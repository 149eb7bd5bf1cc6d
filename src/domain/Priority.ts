/**
 * Task priority and ageing: a waiting task slowly gains priority, so a steady
 * stream of important work cannot starve less important work forever.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * Lowest priority a task may have (the `tasks_priority_range` check in SQL).
 *
 * @since 0.1.0
 */
export const PRIORITY_MIN = -1000

/**
 * Highest priority a task may have (the `tasks_priority_range` check in SQL).
 *
 * @since 0.1.0
 */
export const PRIORITY_MAX = 1000

/**
 * Schema of a priority: an integer in [{@link PRIORITY_MIN}, {@link PRIORITY_MAX}];
 * higher runs first.
 *
 * @since 0.1.0
 */
export const Priority = Schema.Int.check(Schema.isBetween({ minimum: PRIORITY_MIN, maximum: PRIORITY_MAX }))

/**
 * A priority (higher runs first).
 *
 * @since 0.1.0
 */
export type Priority = typeof Priority.Type

/**
 * How waiting raises priority: +1 per `stepSeconds` waited, the boost capped
 * at `maxBoost`.
 *
 * @since 0.1.0
 */
export interface Ageing {
  readonly stepSeconds: number
  readonly maxBoost: number
}

/**
 * +1 per minute waited, up to the whole priority range (+2000): the bound that
 * makes the no-starvation argument of {@link starvationBound} hold for every pair
 * of priorities. A gap of 10 closes in 10 minutes; the extreme gap in 2000.
 *
 * @since 0.1.0
 */
export const defaultAgeing: Ageing = { stepSeconds: 60, maxBoost: PRIORITY_MAX - PRIORITY_MIN }

/**
 * The priority a task claims with after waiting `waitedSeconds` past its
 * `run_at`: `priority + min(maxBoost, max(0, waitedSeconds) / stepSeconds)`.
 *
 * The result is a real number, not floored, so that it stays identical to the
 * claim query's ordering expression
 * `priority + least(max_boost, greatest(0, extract(epoch from now() - run_at)) / step_seconds)`;
 * change both or neither.
 *
 * @since 0.1.0
 */
export const effectivePriority = (priority: number, waitedSeconds: number, ageing: Ageing = defaultAgeing): number =>
  priority + Math.min(ageing.maxBoost, Math.max(0, waitedSeconds) / ageing.stepSeconds)

/**
 * Seconds a task of `lowPriority` must wait until it ranks at least as high as
 * a task of `highPriority` that has just arrived; `0` when it already does,
 * `Infinity` when `maxBoost` can never close the gap.
 *
 * **No starvation.** Claims order by effective priority, then by `run_at`. A
 * waiting task's effective priority grows without pause until its boost reaches
 * `maxBoost`, while a new arrival starts with no boost. With
 * `maxBoost >= PRIORITY_MAX - PRIORITY_MIN`, after at most
 * `(PRIORITY_MAX - PRIORITY_MIN) * stepSeconds` seconds every waiting task
 * ranks at least as high as any new arrival, and it wins the tie because its
 * `run_at` is older. Only tasks already ahead of it can then be claimed first,
 * and there are finitely many of them, so every task is eventually claimed.
 *
 * @since 0.1.0
 */
export const starvationBound = (ageing: Ageing, highPriority: number, lowPriority: number): number => {
  const gap = highPriority - lowPriority
  if (gap <= 0) return 0
  if (ageing.maxBoost < gap) return Infinity
  return gap * ageing.stepSeconds
}

/**
 * A coarse class of priorities, for gauges and reports: a depth per priority
 * value would be up to 2001 series a queue, and operators ask whether the
 * important work waits, not which of its priorities does.
 *
 * @since 0.1.0
 */
export type PriorityBand = "high" | "normal" | "low"

/**
 * The bands, most important first.
 *
 * @since 0.1.0
 */
export const priorityBands: ReadonlyArray<PriorityBand> = ["high", "normal", "low"]

/**
 * The band of `priority`: `high` above the default 0, `normal` at it, `low` below.
 * The sampler's SQL computes the same (`case when priority > 0 …`); change both or
 * neither.
 *
 * @since 0.1.0
 */
export const bandOf = (priority: number): PriorityBand => (priority > 0 ? "high" : priority < 0 ? "low" : "normal")
