/**
 * This worker in the registry of live workers (`taskfiber.workers`): it says which
 * queues and types it serves at once and every 10 s, off the path to the first
 * claim (a worker facing a backlog starts on it without waiting for this
 * statement), and is removed at shutdown. And once a minute it warns of due tasks
 * that no live worker serves (a queue or type nobody runs).
 */
import { Duration, Effect } from "effect"
import * as Workers from "../../store/Workers.ts"
import type { Duty } from "../BackgroundLoop.ts"

/** How often due tasks that no live worker serves are looked for. */
const unservedCheckEvery = Duration.minutes(1)

/** The registry's renewal of `self`. */
export const renewal = (
  workers: Workers.Workers["Service"],
  self: { readonly id: string; readonly queues: ReadonlyArray<string>; readonly types: ReadonlyArray<string> }
): Duty => ({ name: "worker registry", step: workers.seen(self), every: Duration.millis(Workers.renewEveryMs) })

/** Warns of due tasks that no live worker serves. */
export const unservedWatch = (workers: Workers.Workers["Service"]): Duty => ({
  name: "unserved watch",
  step: Effect.gen(function*() {
    yield* Effect.sleep(unservedCheckEvery)
    for (const u of yield* workers.unserved(Workers.liveWithinMs)) {
      yield* Effect.logWarning("due tasks that no live worker serves are waiting", {
        queue: u.queue,
        taskType: u.type,
        count: u.count,
        waitingSeconds: Math.round(u.waitingSeconds),
        hint: "run a worker with this job in this queue (Job.define queue / otherQueues)"
      })
    }
  })
})

/** Removes `workerId` from the registry (the shutdown's last write; a failure is logged). */
export const deregister = (workers: Workers.Workers["Service"], workerId: string) =>
  workers.stopped(workerId).pipe(
    Effect.catch((error) => Effect.logWarning("worker registry not updated", { error: error.message }))
  )
