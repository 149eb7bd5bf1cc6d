/**
 * Durations as people write them in settings and flags, one form everywhere: bare
 * milliseconds (`1500`), an Effect duration string (`500 millis`, `30 seconds`,
 * `2 minutes`), or the short form of the same with a unit letter (`250ms`, `30s`,
 * `5m`, `1h`, `2d`), as a list of three thresholds is easier to read in it.
 *
 * @since 0.1.0
 */
import { Duration, Option } from "effect"

/** Milliseconds of each short unit. */
const shortUnits = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

/**
 * The duration `text` says, or undefined when it is neither milliseconds nor a
 * duration string. A leading minus gives a negative duration, for the caller to
 * refuse with its own words.
 *
 * @since 0.1.0
 */
export const parse = (text: string): Duration.Duration | undefined => {
  const t = text.trim()
  const negative = /^-\s*/.exec(t)
  const body = negative ? t.slice(negative[0].length) : t
  let ms: number | undefined
  const short = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(body)
  if (/^\d+(\.\d+)?$/.test(body)) ms = Number(body)
  else if (short) ms = Number(short[1]) * shortUnits[short[2] as keyof typeof shortUnits]
  else {
    const d = Duration.fromInput(body as Duration.Input)
    if (Option.isSome(d) && Duration.isFinite(d.value)) ms = Duration.toMillis(d.value)
  }
  if (ms === undefined || !Number.isFinite(ms)) return undefined
  return Duration.millis(negative ? -ms : ms)
}

/** What a duration setting or flag expects, for its error message. */
export const expected = `milliseconds or a duration such as "30 seconds"`
