import { expect, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
import { PermanentError, TransientError } from "../../src/domain/Errors.ts"
import * as RetryPolicy from "../../src/domain/RetryPolicy.ts"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import * as Runtime from "../support/Runtime.ts"

const Echo = Job.define({
  name: "echo",
  queue: "basics",
  payload: Schema.Struct({ text: Schema.String }),
  run: (payload) => Effect.succeed(payload)
})
const Broken = Job.define({
  name: "broken",
  queue: "basics",
  payload: Schema.Struct({}),
  run: () => Effect.fail(new PermanentError({ message: "cannot ever work" }))
})
const Flaky = Job.define({
  name: "flaky",
  queue: "basics",
  payload: Schema.Struct({ failTimes: Schema.Int }),
  retry: RetryPolicy.exponential({ baseMs: 1, maxDelayMs: 5, maxAttempts: 5 }),
  run: (payload, ctx) =>
    ctx.attempt <= payload.failTimes ? Effect.fail(new TransientError({ message: `attempt ${ctx.attempt}` })) : Effect.succeed(ctx.attempt)
})

it.layer(Runtime.layer([Echo, Broken, Flaky]), { timeout: 60_000, excludeTestServices: true })("Supervisor", (it) => {
  it.effect("runs a task to succeeded with its result", () =>
    Effect.gen(function*() {
      const { id } = yield* Tasks.enqueue(Echo, { text: "hi" })
      const [outcome] = yield* Runtime.awaitOutcomes(1)
      expect(outcome).toEqual({ taskId: id, outcome: "succeeded" })
      const task = Option.getOrThrow(yield* Effect.flatMap(TaskStore, (s) => s.get(id))).task
      expect(task).toMatchObject({ status: "succeeded", attempt: 1, result: { text: "hi" } })
    }))
})
