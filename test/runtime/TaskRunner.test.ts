/**
 * The run's span and log annotations. With a tracing backend installed, every run
 * is a span that parents the handler's own spans and is ended with its exit; with
 * none (Effect's native tracer, which exports nothing) no span is made per run.
 * The handler's logs carry the task's annotations either way.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, Option, References, Schema, Scope, Tracer } from "effect"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import { recordingTracer } from "../support/recordingTracer.ts"
import * as Runtime from "../support/Runtime.ts"

const Traced = Job.define({
  name: "span-traced",
  queue: "spans",
  payload: Schema.Struct({}),
  run: (_, ctx) =>
    Effect.gen(function*() {
      yield* Effect.log("inside the handler")
      // The span current in the handler (if any), and one the handler opens.
      const current = yield* Effect.option(Effect.currentSpan)
      const child = yield* Effect.withSpan(Effect.currentSpan, "child")
      ctx.span.attribute("custom", "set by the handler")
      return {
        span: ctx.span.name,
        currentIsRun: Option.isSome(current) && current.value.spanId === ctx.span.spanId,
        childOfRun: child.parent._tag === "Some" && child.parent.value.spanId === ctx.span.spanId
      }
    })
})

/**
 * Runs one Traced task on a supervisor of its own, built with `tracer` when given;
 * returns the task and the annotations of the handler's log line.
 */
const runOne = (tracer: Tracer.Tracer | undefined) =>
  Effect.gen(function*() {
    const annotations: Array<Record<string, unknown>> = []
    const collector = Logger.make((o) => {
      const message = Array.isArray(o.message) ? o.message[0] : o.message
      if (message === "inside the handler") annotations.push({ ...o.fiber.getRef(References.CurrentLogAnnotations) })
    })
    const scope = yield* Scope.make()
    const start = Effect.gen(function*() {
      const s = yield* Runtime.startSupervisor([Traced])
      const { id } = yield* Tasks.enqueue(Traced, {})
      yield* Runtime.outcomesOf(s, 1)
      return id
    })
    const id = yield* (tracer === undefined ? start : Effect.withTracer(start, tracer)).pipe(
      Scope.provide(scope),
      Effect.provide(Logger.layer([collector]))
    )
    yield* Scope.close(scope, Exit.void)
    const task = Option.getOrThrow(yield* Effect.flatMap(TaskStore, (s) => s.get(id))).task
    return { id, task, annotations }
  })

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("the run's span", (it) => {
  it.effect("with a tracing backend: a span per run, current in the handler, parenting its spans, ended and exported", () =>
    Effect.gen(function*() {
      const { ended, tracer } = recordingTracer()
      const { id, task, annotations } = yield* runOne(tracer)
      expect(task.status).toBe("succeeded")
      expect(task.result).toEqual({ span: "taskfiber.run span-traced", currentIsRun: true, childOfRun: true })
      const run = ended.find((s) => s.name === "taskfiber.run span-traced")
      expect(run?.attributes.get("taskfiber.task_id")).toBe(id)
      expect(run?.attributes.get("taskfiber.attempt")).toBe(1)
      expect(run?.attributes.get("custom")).toBe("set by the handler")
      expect(run?.status._tag === "Ended" && Exit.isSuccess(run.status.exit)).toBe(true)
      expect(ended.find((s) => s.name === "child")?.parent).toEqual(Option.some(run))
      expect(annotations).toEqual([{ taskId: id, taskType: "span-traced", attempt: 1 }])
    }))

  it.effect("without one: no span per run (nothing could export it); ctx.span is a stand-in; logs still annotated", () =>
    Effect.gen(function*() {
      const { id, task, annotations } = yield* runOne(undefined)
      expect(task.status).toBe("succeeded")
      expect(task.result).toEqual({ span: "taskfiber.run span-traced", currentIsRun: false, childOfRun: false })
      expect(annotations).toEqual([{ taskId: id, taskType: "span-traced", attempt: 1 }])
    }))
})
