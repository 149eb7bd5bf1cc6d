/**
 * The progress flusher: one fiber writes the pending progress and checkpoint of
 * every running task that reported, once per PROGRESS_INTERVAL (see
 * ProgressReporter). One reporter's defect costs the others nothing.
 */
import type { Duration } from "effect"
import { Effect } from "effect"
import type { Duty } from "../BackgroundLoop.ts"
import type { ProgressReporter } from "../ProgressReporter.ts"

/** Flushes `reporters` (the runs that reported, kept by the runner) every `every`. */
export const make = (reporters: ReadonlySet<ProgressReporter>, every: Duration.Duration): Duty => ({
  name: "progress flusher",
  every,
  step: Effect.suspend(() =>
    Effect.forEach(
      [...reporters],
      (r) => Effect.catchDefect(r.flush, (defect) => Effect.logError("progress flush failed", defect)),
      { discard: true }
    )
  )
})
