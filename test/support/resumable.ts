/**
 * A job that works in steps and checkpoints after each: the crash test's subject.
 * On its first attempt it stops after step 3 and waits (as if working) so the
 * test can kill its process; a later attempt resumes from the checkpoint.
 */
import { Effect, Schema } from "effect"
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
