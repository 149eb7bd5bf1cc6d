/**
 * The reaper: every REAP_INTERVAL, takes the tasks whose leases expired (their
 * workers crashed or stalled), at most 100 per statement. A run that had started
 * becomes `retrying` (or `failed` when out of attempts) with `LeaseExpired`; a task
 * held without starting goes back to `queued` with its attempt given back. Any
 * worker's reaper takes any worker's tasks: the statement is one transaction, and
 * SKIP LOCKED keeps two reapers from taking the same task.
 */
import type { Duration } from "effect"
import { Effect } from "effect"
import type { RuntimeEvent } from "../../observability/RuntimeEvents.ts"
import type { TaskStore } from "../../store/TaskStore.ts"
import type { Duty } from "../BackgroundLoop.ts"

/** Most tasks reaped by one statement. */
const reapBatch = 100

/** The reaper of one worker; `wake` asks its dispatcher to claim (reaped tasks may be due). */
export const make = (options: {
  readonly store: TaskStore["Service"]
  readonly workerId: string
  readonly every: Duration.Duration
  readonly wake: () => void
  readonly emit: (event: RuntimeEvent) => void
}): Duty => ({
  name: "reaper",
  every: options.every,
  step: Effect.map(options.store.reapExpired(reapBatch), (reaped) => {
    if (reaped.length === 0) return
    options.emit({ _tag: "Reaped", workerId: options.workerId, tasks: reaped })
    options.wake()
  })
})
