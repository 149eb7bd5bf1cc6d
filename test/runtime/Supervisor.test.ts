import { expect, it } from "@effect/vitest"
import { Effect, Option, Schema } from "effect"
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
const Traced = Job.define({
  name: "traced",
  queue: "basics",
  payload: Schema.Struct({}),
  run: (_, ctx) =>
    Effect.succeed({
      span: ctx.span._tag === "Span" ? ctx.span.name : "external",
      taskId: ctx.span._tag === "Span" ? ctx.span.attributes.get("taskfiber.task_id") : undefined
    })
})

it.layer(Runtime.layer([Echo, Traced]), { timeout: 60_000, excludeTestServices: true })("Supervisor", (it) => {
  it.effect("runs a task to succeeded with its result", () =>
    Effect.gen(function*() {
      const { id } = yield* Tasks.enqueue(Echo, { text: "hi" })
      const [outcome] = yield* Runtime.awaitOutcomes(1)
      expect(outcome).toEqual({ taskId: id, outcome: "succeeded" })
      const task = Option.getOrThrow(yield* Effect.flatMap(TaskStore, (s) => s.get(id))).task
      expect(task).toMatchObject({ status: "succeeded", attempt: 1, result: { text: "hi" } })
    }))

  it.effect("the handler's ctx carries the run's span, tagged with the task id", () =>
    Effect.gen(function*() {
      const { id } = yield* Tasks.enqueue(Traced, {})
      yield* Runtime.awaitOutcomes(1)
      const task = Option.getOrThrow(yield* Effect.flatMap(TaskStore, (s) => s.get(id))).task
      expect(task.result).toEqual({ span: "taskfiber.run traced", taskId: id })
    }))
})
