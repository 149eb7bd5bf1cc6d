/**
 * Hears cancellations on the CancelBus and stops the run of a cancelled task held
 * here; a buffered one is dropped before it starts. Every cancelled id is
 * remembered (LocalQueue.rememberCancel): a claim of the task may be on its way
 * back. A cancellation this bus never delivers (another instance's bus, a
 * subscriber that fell behind) is found by the heartbeat.
 */
import { Effect } from "effect"
import { CancelBus } from "../coordination/CancelBus.ts"
import type { StopReason } from "../observability/RuntimeEvents.ts"
import type { Duty } from "./BackgroundLoop.ts"
import type { HeldTask, LocalQueue } from "./LocalQueue.ts"

/** The canceller of one worker. */
export const make = (
  bus: CancelBus["Service"],
  local: LocalQueue,
  stop: (entry: HeldTask, reason: StopReason) => void
): Duty => ({
  name: "cancel subscriber",
  step: Effect.gen(function*() {
    const take = yield* bus.subscribe
    yield* Effect.forever(Effect.map(take, (taskId) => {
      local.rememberCancel(taskId)
      const entry = local.held.get(taskId)
      if (entry !== undefined && !local.unbuffer(entry)) stop(entry, "cancel")
    }))
  }).pipe(Effect.scoped)
})
