/**
 * The heartbeat: renews the lease of every claim this instance holds, in one
 * statement per third of the lease, and records which prefetched tasks have
 * started (a worker crash after that counts their attempt). A claim that lost its
 * task meanwhile is stopped: cancelled (here or by another instance) straight from
 * this claim, or its lease expired and the reaper took it.
 *
 * Only the claims held here are renewed: a run whose outcome could not be written
 * was given up, and must expire so that the reaper retries it.
 */
import { Duration, Effect } from "effect"
import type { StopReason } from "../../observability/RuntimeEvents.ts"
import type { TaskStore } from "../../store/TaskStore.ts"
import type { Duty } from "../BackgroundLoop.ts"
import type { HeldTask, LocalQueue } from "../LocalQueue.ts"

/** The heartbeat of one worker. */
export const make = (options: {
  readonly store: TaskStore["Service"]
  readonly local: LocalQueue
  readonly workerId: string
  readonly lease: Duration.Duration
  readonly stop: (entry: HeldTask, reason: StopReason) => void
}): Duty => {
  const { store, local, workerId } = options
  const leaseMs = Duration.toMillis(options.lease)
  const step = Effect.gen(function*() {
    if (local.held.size === 0) return
    // Only claims held before the statement can be judged by it: one made while
    // it was in flight is not in its answer, yet is ours. `started`: its handler's
    // fiber exists (not merely its slot: a start record may be in flight).
    const before = [...local.held.values()]
    const renewed = new Set(yield* store.extendLeases(
      workerId,
      leaseMs,
      before.map((e) => ({ id: e.task.id, revision: e.task.revision, started: e.handler !== undefined }))
    ))
    const gone = before.filter((e) => !renewed.has(e.task.id) && local.held.get(e.task.id) === e)
    if (gone.length === 0) return
    // Why each claim lost its task, so that its run is reported as what happened.
    const now = new Map((yield* store.statuses(gone.map((e) => e.task.id))).map((t) => [t.id, t]))
    for (const entry of gone) {
      if (local.unbuffer(entry)) continue
      const state = now.get(entry.task.id)
      const cancelled = state?.status === "cancelled" && state.revision === entry.task.revision + 1
      options.stop(entry, cancelled ? "cancel" : "lease-expired")
    }
  })
  return { name: "heartbeat", step, every: Duration.millis(leaseMs / 3) }
}
