/** Small statistics for the benchmark: percentiles and median of runs. */

/** The nearest-rank percentile `p` (0–100) of `values`. */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1]!
}

/** Median, min and max of the runs of one measurement. */
export interface Spread {
  readonly median: number
  readonly min: number
  readonly max: number
}

export const spread = (values: ReadonlyArray<number>): Spread => ({
  median: percentile(values, 50),
  min: Math.min(...values),
  max: Math.max(...values)
})

/** Rounds to `digits` decimals, for the JSON. */
export const round = (value: number, digits = 0): number => {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
