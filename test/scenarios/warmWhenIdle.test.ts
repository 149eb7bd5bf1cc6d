/**
 * A Database layer built with `warmUp: "when-idle"` leaves its connections to the
 * supervisor, which warms them the first time it finds nothing to claim: before
 * it is up when it starts idle, only after the backlog when it starts facing one.
 * The warm-up is recorded through the IdleWork port (the real one is Database's,
 * tested in test/store/Warmup.test.ts).
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Schema } from "effect"
import * as Job from "../../src/runtime/Job.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import { IdleWork } from "../../src/coordination/IdleWork.ts"
import * as Runtime from "../support/Runtime.ts"

const recording = Effect.map(Deferred.make<void>(), (warmed) => ({
  warmed,
  cold: IdleWork.of({ run: Deferred.succeed(warmed, undefined) })
}))

it.layer(Runtime.storeOnly, { timeout: 60_000, excludeTestServices: true })("warm-up when idle", (it) => {
  it.effect("a supervisor that starts with nothing to claim warms the connections before it is up", () =>
    Effect.gen(function*() {
      const { warmed, cold } = yield* recording
      const Noop = Job.define({ name: "noop-idle", queue: "warm-idle", payload: Schema.Struct({}), run: () => Effect.void })
      yield* Runtime.startSupervisor([Noop]).pipe(Effect.provideService(IdleWork, cold))
      expect(yield* Deferred.isDone(warmed)).toBe(true)
    }).pipe(Effect.scoped))

  it.effect("one that starts facing a backlog is up without warming, and warms once the backlog is done", () =>
    Effect.gen(function*() {
      const { warmed, cold } = yield* recording
      const release = yield* Deferred.make<void>()
      const Blocked = Job.define({
        name: "blocked-backlog", queue: "warm-backlog", payload: Schema.Struct({}),
        run: () => Deferred.await(release)
      })
      // Twice the job slots: every slot busy and more waiting, so no claim comes
      // back short until the handlers are released.
      for (let i = 0; i < 20; i++) yield* Tasks.enqueue(Blocked, {})
      const s = yield* Runtime.startSupervisor([Blocked], { maxConcurrentJobs: 10 }).pipe(
        Effect.provideService(IdleWork, cold)
      )
      expect(yield* Deferred.isDone(warmed)).toBe(false)
      yield* Deferred.succeed(release, undefined)
      yield* Runtime.outcomesOf(s, 20)
      yield* Deferred.await(warmed).pipe(Effect.timeout(Duration.seconds(10)))
    }).pipe(Effect.scoped))
})
