/**
 * A job that works in steps and checkpoints after each: the crash test's subject.
 * On its first attempt it stops after step 3 and waits (as if working) so the
 * test can kill its process; a later attempt resumes from the checkpoint.
 */
import { Effect, Schema } from "effect"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as Job from "../../src/runtime/Job.ts"

export const Resumable = Job.define({
  name: "resumable",
  queue: "crash",
  payload: Schema.Struct({ steps: Schema.Int }),
  run: (payload, ctx) =>
    Effect.gen(function*() {
      const from = (ctx.checkpoint as { step?: number } | null)?.step ?? 0
      for (let step = from + 1; step <= payload.steps; step++) {
        yield* ctx.saveCheckpoint({ step })
        if (ctx.attempt === 1 && step === 3) return yield* Effect.never
      }
      return { resumedFrom: from, attempt: ctx.attempt }
    })
})

/**
 * A job with a single attempt that runs until its process is killed: the prefetch
 * crash test's subject (its worker holds the rest of its tasks in the buffer).
 */
export const OneShot = Job.define({
  name: "one-shot",
  queue: "crash-prefetch",
  payload: Schema.Struct({ n: Schema.Int }),
  retry: RetryPolicy.none,
  run: (payload, ctx) => Effect.andThen(Effect.logInfo("one-shot started", { taskId: ctx.taskId, n: payload.n }), Effect.never)
})
