/**
 * Durations as people write them in settings and flags, one form everywhere: bare
 * milliseconds (`1500`) or an Effect duration string (`500 millis`, `30 seconds`,
 * `2 minutes`).
 *
 * @since 0.1.0
 */
import { Duration, Option } from "effect"

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
  if (/^\d+(\.\d+)?$/.test(body)) ms = Number(body)
  else {
    const d = Duration.fromInput(body as Duration.Input)
    if (Option.isSome(d) && Duration.isFinite(d.value)) ms = Duration.toMillis(d.value)
  }
  if (ms === undefined || !Number.isFinite(ms)) return undefined
  return Duration.millis(negative ? -ms : ms)
}

/** What a duration setting or flag expects, for its error message. */
export const expected = `milliseconds or a duration such as "30 seconds"`
