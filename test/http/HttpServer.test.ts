/**
 * The HTTP server of `Taskfiber.layerWithoutDatabase({ http })` on a real port:
 * probes, readiness through start and shutdown, the health report, Prometheus metrics of real runs,
 * and a port already taken refused in one line.
 */
import { createServer } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Schema, Scope } from "effect"
import * as Job from "../../src/runtime/Job.ts"
import * as Supervisor from "../../src/runtime/Supervisor.ts"
import * as Tasks from "../../src/runtime/Tasks.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import { freePort } from "../support/freePort.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const queue = "http-server"
const Greet = Job.define({ name: "greet", queue, payload: Schema.Struct({ name: Schema.String }), run: ({ name }) => Effect.succeed(`hi ${name}`) })
const Fail = Job.define({ name: "refuse", queue, payload: Schema.Struct({}), maxAttempts: 1, run: () => Effect.fail(new Error("no")) })

const get = (port: number, path: string) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`)
    return { status: response.status, type: response.headers.get("content-type") ?? "", text: await response.text() }
  })

/** The runtime with its server on `port`, built in a scope of its own (closed by the test). */
const start = (port: number, jobs: ReadonlyArray<Job.AnyJob> = [Greet, Fail]) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(
      Taskfiber.layerWithoutDatabase({ jobs, config: Runtime.testConfig(), kafka: false, http: { port, host: "127.0.0.1" } }),
      scope
    )
    return { scope, context }
  })

describe("HttpServer", () => {
  it.layer(TestDatabase.layer(), { timeout: 60_000, excludeTestServices: true })("on a test database", (it) => {
    it.effect("live and ready once the supervisor is up; /metrics counts the runs by type and queue", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const { scope, context } = yield* start(port)
        const live = yield* get(port, "/health/live")
        expect(live.status).toBe(200)
        const ready = yield* get(port, "/health/ready")
        expect(ready.status).toBe(200)
        expect(JSON.parse(ready.text)).toEqual({ ready: true, supervisor: "running", reasons: [] })

        // The health report of the sampler's latest sample: nothing has happened yet.
        const health = yield* get(port, "/health")
        expect(health.status).toBe(200)
        expect(JSON.parse(health.text)).toMatchObject({ status: "HEALTHY", findings: expect.any(Array) })

        const supervisor = Layer.succeedContext(context)
        yield* Effect.gen(function*() {
          yield* Tasks.enqueue(Greet, { name: "ada" })
          yield* Tasks.enqueue(Greet, { name: "grace" })
          yield* Tasks.enqueue(Fail, {})
          const s = yield* Supervisor.Supervisor
          yield* Runtime.outcomesOf(s, 3)
        }).pipe(Effect.provide(supervisor))

        const metrics = yield* get(port, "/metrics")
        expect(metrics.status).toBe(200)
        expect(metrics.type).toMatch(/^text\/plain/)
        const line = (name: string) => metrics.text.split("\n").find((l) => l.startsWith(name))
        expect(line(`taskfiber_tasks_enqueued_total{type="greet",queue="${queue}"}`)).toMatch(/ 2$/)
        expect(line(`taskfiber_tasks_succeeded_total{type="greet",queue="${queue}"}`)).toMatch(/ 2$/)
        expect(line(`taskfiber_tasks_failed_total{type="refuse",queue="${queue}"}`)).toMatch(/ 1$/)
        expect(line(`taskfiber_tasks_dead_lettered_total{type="refuse",queue="${queue}"}`)).toMatch(/ 1$/)
        expect(line(`taskfiber_task_run_seconds_count{type="greet",queue="${queue}"}`)).toMatch(/ 2$/)
        expect(line(`taskfiber_task_wait_seconds_count{type="greet",queue="${queue}"}`)).toMatch(/ 2$/)
        expect(line("taskfiber_claim_batch_size_count")).toBeDefined()
        yield* Scope.close(scope, Exit.void)
        const after = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/health/live`).then(() => "answered", () => "refused"))
        expect(after).toBe("refused")
      }))

    it.effect("ready reads 503 \"shutting down\" while running jobs finish at shutdown", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const started = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        const Slow = Job.define({
          name: "slow", queue, payload: Schema.Struct({}),
          run: () =>
            Effect.gen(function*() {
              yield* Deferred.succeed(started, undefined)
              yield* Deferred.await(release)
            })
        })
        const { scope, context } = yield* start(port, [Slow])
        yield* Tasks.enqueue(Slow, {}).pipe(Effect.provide(Layer.succeedContext(context)))
        yield* Deferred.await(started)
        // The shutdown waits for the running job; meanwhile the probe says why it is not ready.
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        let ready = yield* get(port, "/health/ready")
        while (ready.status === 200) ready = yield* get(port, "/health/ready")
        expect(ready.status).toBe(503)
        expect(JSON.parse(ready.text)).toEqual({ ready: false, supervisor: "shutting down", reasons: ["the supervisor is shutting down"] })
        expect((yield* get(port, "/health/live")).status).toBe(200)
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(closing)
      }))

    it.effect("a port in use is refused in one line naming the setting", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const holder = createServer()
        yield* Effect.acquireRelease(
          Effect.promise(() => new Promise<void>((resolve) => holder.listen(port, "127.0.0.1", resolve))),
          () => Effect.promise(() => new Promise<void>((resolve) => holder.close(() => resolve())))
        )
        const error = yield* Effect.flip(Effect.scoped(Layer.build(
          Taskfiber.layerWithoutDatabase({ jobs: [Greet], config: Runtime.testConfig(), kafka: false, http: { port, host: "127.0.0.1" } })
        )))
        expect(error.message).toBe(`cannot serve HTTP on 127.0.0.1:${port}: the port is in use by another program; set HTTP_PORT to a free port, or 0 for no server`)
      }).pipe(Effect.scoped))
  })
})
