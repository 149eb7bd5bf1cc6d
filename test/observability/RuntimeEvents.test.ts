/**
 * The event hub: listeners hear the kinds they chose, in order, for their scope's
 * lifetime; one that throws costs the others nothing. And EventLog turns one
 * worker's events into its log lines.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, References, Scope } from "effect"
import type { ClaimedTask } from "../../src/domain/Task.ts"
import * as EventLog from "../../src/observability/EventLog.ts"
import { type RuntimeEvent, RuntimeEvents } from "../../src/observability/RuntimeEvents.ts"
import * as RuntimeEventsModule from "../../src/observability/RuntimeEvents.ts"

const task: ClaimedTask = {
  id: "t1", queue: "q", type: "job", payload: {}, attempt: 2, maxAttempts: 3, checkpoint: null,
  removeOnComplete: false, revision: 4, startRecorded: true, recordStartFirst: false
}
const settled: RuntimeEvent = { _tag: "Settled", workerId: "w1", task, outcome: "succeeded", runMs: 1 }

describe("RuntimeEvents", () => {
  it.effect("a listener hears the kinds it chose while its scope is open; a throwing one stops nobody", () =>
    Effect.gen(function*() {
      const hub = RuntimeEventsModule.make()
      const heard: Array<string> = []
      expect(hub.observed("Settled")).toBe(false)
      const scope = yield* Scope.make()
      yield* hub.subscribe(["Settled"], () => {
        throw new Error("a broken listener")
      }).pipe(Scope.provide(scope))
      yield* hub.subscribe(["Settled", "Reaped"], (e) => heard.push(e._tag)).pipe(Scope.provide(scope))
      expect(hub.observed("Settled")).toBe(true)
      expect(hub.observed("Started")).toBe(false)
      hub.emit(settled)
      hub.emit({ _tag: "Started", workerId: "w1", task })
      hub.emit({ _tag: "Reaped", workerId: "w1", tasks: [] })
      expect(heard).toEqual(["Settled", "Reaped"])
      yield* Scope.close(scope, Exit.void)
      hub.emit(settled)
      expect(heard).toEqual(["Settled", "Reaped"])
      expect(hub.observed("Settled")).toBe(false)
    }))

  const collect = (level: "Info" | "Warn") => {
    const lines: Array<{ readonly level: string; readonly message: unknown; readonly workerId: unknown }> = []
    const collector = Logger.make(({ logLevel, message }) => {
      const [text, fields] = Array.isArray(message) ? message : [message]
      lines.push({ level: logLevel, message: text, workerId: (fields as { workerId?: unknown } | undefined)?.workerId })
    })
    const hub = RuntimeEventsModule.make()
    const emitSome = Effect.sync(() => {
      hub.emit(settled)
      hub.emit({ ...settled, workerId: "w2" } as RuntimeEvent)
      hub.emit({
        _tag: "Reaped", workerId: "w1",
        tasks: [{ id: "t2", status: "retrying", lastError: null }, { id: "t3", status: "queued", lastError: null }]
      })
    })
    // Closing the layer's scope stops the loggers and writes what is still queued.
    return Effect.scoped(Effect.andThen(Layer.build(Layer.fresh(EventLog.layer)), emitSome)).pipe(
      Effect.provideService(RuntimeEvents, hub),
      Effect.provide(Logger.layer([collector])),
      Effect.provideService(References.MinimumLogLevel, level),
      Effect.as(lines)
    )
  }

  it.effect("EventLog logs each settled run at Info naming its worker, and reaped tasks at Warn", () =>
    Effect.gen(function*() {
      const lines = yield* collect("Info")
      expect(lines.filter((l) => l.message === "task settled")).toEqual([
        { level: "Info", message: "task settled", workerId: "w1" },
        { level: "Info", message: "task settled", workerId: "w2" }
      ])
      expect(lines).toContainEqual({ level: "Warn", message: "task reaped: its lease expired", workerId: "w1" })
      expect(lines).toContainEqual({ level: "Warn", message: "task reaped unstarted: handed back to the queue, attempt given back", workerId: "w1" })
      expect(lines).toHaveLength(4)
    }))

  it.effect("EventLog below Info queues no settled line at all; warnings still come", () =>
    Effect.gen(function*() {
      const lines = yield* collect("Warn")
      expect(lines.map((l) => l.message)).toEqual(["task reaped: its lease expired", "task reaped unstarted: handed back to the queue, attempt given back"])
    }))
})
