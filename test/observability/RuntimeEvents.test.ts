/**
 * The event hub: listeners hear the kinds they chose, in order, for their scope's
 * lifetime; one that throws costs the others nothing. And EventLog turns one
 * worker's events into its log lines.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Logger, References, Scope } from "effect"
import type { ClaimedTask } from "../../src/domain/Task.ts"
import * as EventLog from "../../src/observability/EventLog.ts"
import { type RuntimeEvent, RuntimeEvents } from "../../src/observability/RuntimeEvents.ts"
import * as RuntimeEventsModule from "../../src/observability/RuntimeEvents.ts"

const task: ClaimedTask = {
  id: "t1", queue: "q", type: "job", payload: {}, attempt: 2, maxAttempts: 3, checkpoint: null,
  removeOnComplete: false, revision: 4, startRecorded: true, recordStartFirst: false
}
const settled: RuntimeEvent = { _tag: "Settled", workerId: "w1", task, outcome: "succeeded" }

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

  it.effect("EventLog logs one worker's settled runs at Info and its reaped tasks at Warn; nothing of other workers", () => {
    const lines: Array<{ readonly level: string; readonly message: unknown }> = []
    const collector = Logger.make(({ logLevel, message }) => {
      lines.push({ level: logLevel, message: Array.isArray(message) ? message[0] : message })
    })
    return Effect.gen(function*() {
      const hub = RuntimeEventsModule.make()
      const log = yield* Effect.gen(function*() {
        const log = yield* EventLog.start("w1", yield* Effect.scope)
        hub.emit(settled)
        hub.emit({ ...settled, workerId: "w2" } as RuntimeEvent)
        hub.emit({
          _tag: "Reaped", workerId: "w1",
          tasks: [{ id: "t2", status: "retrying", lastError: null }, { id: "t3", status: "queued", lastError: null }]
        })
        return log
      }).pipe(Effect.scoped, Effect.provideService(RuntimeEvents, hub))
      // The scope closed: the logger fiber has logged what it took; the rest is flushed.
      yield* log.flush
      expect(lines.filter((l) => l.message === "task settled")).toEqual([{ level: "Info", message: "task settled" }])
      expect(lines).toContainEqual({ level: "Warn", message: "task reaped: its lease expired" })
      expect(lines).toContainEqual({ level: "Warn", message: "task reaped unstarted: handed back to the queue, attempt kept" })
      expect(lines).toHaveLength(3)
    }).pipe(Effect.provide(Logger.layer([collector])), Effect.provideService(References.MinimumLogLevel, "Info"))
  })
})
