/**
 * A supervisor on a test database, with jobs and settings chosen by the test, and a
 * way to wait for outcomes without polling (the supervisor's outcome queue).
 */
import { Context, Duration, Effect, Layer, Queue } from "effect"
import type { AnyJob } from "../../src/runtime/Job.ts"
import * as JobRegistry from "../../src/runtime/JobRegistry.ts"
import * as RuntimeConfig from "../../src/runtime/RuntimeConfig.ts"
import * as Supervisor from "../../src/runtime/Supervisor.ts"
import type { Outcome } from "../../src/domain/Outcome.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import * as TestDatabase from "./TestDatabase.ts"

/** Short timings so tests finish fast. */
export const testConfig = (overrides: Partial<RuntimeConfig.RuntimeConfig> = {}): RuntimeConfig.RuntimeConfig => ({
  ...RuntimeConfig.defaults,
  lease: Duration.seconds(5),
  reapInterval: Duration.millis(200),
  progressInterval: Duration.millis(200),
  shutdownGrace: Duration.seconds(2),
  ...overrides
})

/** The runtime's services and registry on a test database, without a supervisor. */
export const base = (jobs: ReadonlyArray<AnyJob>) => Taskfiber.services(jobs).pipe(Layer.provideMerge(TestDatabase.layer()))

/** A supervisor over whatever base layer is provided. */
export const supervisor = (config: RuntimeConfig.RuntimeConfig) => Supervisor.layerWith(config)

/** Everything: database, store, registry, bus and one supervisor. */
export const layer = (jobs: ReadonlyArray<AnyJob>, overrides: Partial<RuntimeConfig.RuntimeConfig> = {}) =>
  supervisor(testConfig(overrides)).pipe(Layer.provideMerge(base(jobs)))

/** Waits until `n` outcomes were settled; returns them. */
export const awaitOutcomes = (n: number) =>
  Effect.gen(function*() {
    const s = yield* Supervisor.Supervisor
    const queue = yield* s.outcomes
    const got: Array<{ readonly taskId: string; readonly outcome: Outcome }> = []
    while (got.length < n) got.push(yield* Queue.take(queue))
    return got
  })

/** The runtime's services on a test database: supervisors are started by the tests. */
export const storeOnly = Taskfiber.runtimeServices().pipe(Layer.provideMerge(TestDatabase.layer()))

/**
 * Starts a supervisor with `jobs` for as long as the current scope is open and
 * returns it; closing the scope is a graceful shutdown.
 */
export const startSupervisor = (jobs: ReadonlyArray<AnyJob>, overrides: Partial<RuntimeConfig.RuntimeConfig> = {}) =>
  Effect.gen(function*() {
    const ctx = yield* Layer.build(supervisor(testConfig(overrides)).pipe(Layer.provide(JobRegistry.layer(jobs))))
    return Context.get(ctx, Supervisor.Supervisor)
  })

/** Waits until `n` outcomes of `s` were settled; returns them. */
export const outcomesOf = (s: Supervisor.Supervisor["Service"], n: number) =>
  Effect.gen(function*() {
    const queue = yield* s.outcomes
    const got: Array<{ readonly taskId: string; readonly outcome: Outcome }> = []
    while (got.length < n) got.push(yield* Queue.take(queue))
    return got
  })
