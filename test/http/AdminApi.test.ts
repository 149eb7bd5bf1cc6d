/**
 * The admin HTTP API on a real server and database: every route's answers and
 * problems, idempotent enqueues, the bearer rules, the body limit, the OpenAPI
 * document, and a fuzz showing that no request yields a 5xx or, without the
 * token, changes anything.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Layer, Option, Queue, Redacted, Schema, Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Job from "../../src/runtime/Job.ts"
import * as Supervisor from "../../src/runtime/Supervisor.ts"
import * as AdminApi from "../../src/http/AdminApi.ts"
import * as AdminConfig from "../../src/http/AdminConfig.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import { freePort } from "../support/freePort.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const queue = "admin-api"
const Greet = Job.define({ name: "greet", queue, payload: Schema.Struct({ name: Schema.String }), run: ({ name }) => Effect.succeed(`hi ${name}`) })
const Refuse = Job.define({ name: "refuse", queue, payload: Schema.Struct({}), maxAttempts: 1, run: () => Effect.fail(new Error("no")) })
const jobs = [Greet, Refuse]
const later = () => new Date(Date.now() + 3_600_000).toISOString()

interface Answer {
  readonly status: number
  readonly type: string
  readonly headers: Headers
  readonly body: any
}

/** The runtime with its server on a free port and `env` over the environment; closed with the test's scope. */
const start = (env: Record<string, string> = {}, host = "127.0.0.1") =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      Taskfiber.layerWithoutDatabase({ jobs, config: Runtime.testConfig(), kafka: false, http: { port, host } }),
      scope
    ).pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: { ...process.env, ...env } as Record<string, string> }))))
    const call = (method: string, path: string, options: { body?: unknown; raw?: string | Uint8Array; headers?: Record<string, string> } = {}) =>
      Effect.promise(async (): Promise<Answer> => {
        const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body))
        const response = await fetch(`http://127.0.0.1:${port}${path}`, {
          method,
          headers: { ...(options.body === undefined ? {} : { "content-type": "application/json" }), ...options.headers },
          ...(body === undefined ? {} : { body })
        })
        const text = await response.text()
        let parsed: unknown = text
        try {
          parsed = JSON.parse(text)
        } catch {}
        return { status: response.status, type: response.headers.get("content-type") ?? "", headers: response.headers, body: parsed }
      })
    return { port, call, context }
  })

/** Waits for the outcome of task `id` (other tasks' outcomes pass by). */
const outcomeOf = (context: Context.Context<Supervisor.Supervisor>, id: string) =>
  Effect.gen(function*() {
    const outcomes = yield* Context.get(context, Supervisor.Supervisor).outcomes
    while ((yield* Queue.take(outcomes)).taskId !== id) {}
  })

const expectProblem = (answer: Answer, status: number) => {
  expect(answer.status).toBe(status)
  expect(answer.type).toMatch(/^application\/problem\+json/)
  expect(answer.body).toMatchObject({ type: expect.stringMatching(/^urn:taskfiber:problem:/), title: expect.any(String), status, detail: expect.any(String) })
}

const counts = Effect.gen(function*() {
  const sql = yield* SqlClient
  const [tasks] = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.tasks`
  const [paused] = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.paused_queues`
  const [revisions] = yield* sql<{ n: number }>`select coalesce(sum(revision), 0)::int as n from taskfiber.tasks`
  return { tasks: tasks!.n, paused: paused!.n, revisions: revisions!.n }
})

describe("AdminConfig.decide", () => {
  const token = Option.some(Redacted.make("s3cret"))
  it("reads are open unless ADMIN_READ_TOKEN_REQUIRED", () => {
    expect(AdminConfig.decide({ write: false, token, presented: undefined, readTokenRequired: false, loopback: false })).toBe("allow")
    expect(AdminConfig.decide({ write: false, token, presented: undefined, readTokenRequired: true, loopback: true })).toBe("unauthorized")
    expect(AdminConfig.decide({ write: false, token, presented: "s3cret", readTokenRequired: true, loopback: false })).toBe("allow")
  })
  it("writes need the token; without one configured, only on loopback", () => {
    expect(AdminConfig.decide({ write: true, token, presented: "wrong", readTokenRequired: false, loopback: true })).toBe("unauthorized")
    expect(AdminConfig.decide({ write: true, token, presented: "s3cret", readTokenRequired: false, loopback: false })).toBe("allow")
    expect(AdminConfig.decide({ write: true, token: Option.none(), presented: undefined, readTokenRequired: false, loopback: true })).toBe("allow")
    expect(AdminConfig.decide({ write: true, token: Option.none(), presented: "x", readTokenRequired: false, loopback: false })).toBe("forbidden")
  })
  it("loopback hosts", () => {
    for (const h of ["127.0.0.1", "::1", "[::1]", "localhost", "LOCALHOST"]) expect(AdminConfig.isLoopback(h)).toBe(true)
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "example.com"]) expect(AdminConfig.isLoopback(h)).toBe(false)
  })
  it("token comparison", () => {
    expect(AdminConfig.tokensEqual("a", "a")).toBe(true)
    expect(AdminConfig.tokensEqual("a", "ab")).toBe(false)
  })
})

describe("AdminApi", () => {
  it.layer(TestDatabase.layer(), { timeout: 120_000, excludeTestServices: true })("on a test database", (it) => {
    it.effect("tasks: enqueue (idempotent), get, list, cancel, retry", () =>
      Effect.gen(function*() {
        const { call, context } = yield* start()
        const created = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "ada" }, runAt: later(), dedupeKey: "d-1" } })
        expect(created.status).toBe(201)
        expect(created.body).toMatchObject({ type: "greet", queue, status: "queued", payload: { name: "ada" }, dedupeKey: "d-1" })
        const id: string = created.body.id
        const again = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "other" }, dedupeKey: "d-1" } })
        expect(again.status).toBe(200)
        expect(again.body.id).toBe(id)
        const byId = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "ada" }, id } })
        expect(byId.status).toBe(200)
        expect(byId.body.id).toBe(id)
        const keyed = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "k" }, runAt: later() }, headers: { "idempotency-key": "req-7" } })
        expect(keyed.status).toBe(201)
        expect(keyed.body.dedupeKey).toBe("req-7")
        const keyedAgain = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "k" } }, headers: { "idempotency-key": "req-7" } })
        expect(keyedAgain.status).toBe(200)
        expect(keyedAgain.body.id).toBe(keyed.body.id)

        const bad = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: 42 } } })
        expectProblem(bad, 400)
        expect(bad.body.field).toBe("payload.name")
        const badPriority = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "x" }, priority: "top" } })
        expectProblem(badPriority, 400)
        expect(badPriority.body.field).toBe("priority")
        expectProblem(yield* call("POST", "/tasks", { body: { type: "nope", payload: {} } }), 400)
        expectProblem(yield* call("POST", "/tasks", { raw: "{not json", headers: { "content-type": "application/json" } }), 400)
        expectProblem(yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "x" }, queue: "elsewhere" } }), 400)

        const got = yield* call("GET", `/tasks/${id}`)
        expect(got.status).toBe(200)
        expect(got.body.task.id).toBe(id)
        expect(got.body.events[0]).toMatchObject({ to: "queued" })
        expectProblem(yield* call("GET", "/tasks/0190f5d2-0000-7000-8000-000000000000"), 404)
        expectProblem(yield* call("GET", "/tasks/not-a-uuid"), 404)

        const page = yield* call("GET", `/tasks?status=queued&type=greet&queue=${queue}&limit=1`)
        expect(page.status).toBe(200)
        expect(page.body.tasks).toHaveLength(1)
        expect(typeof page.body.nextCursor).toBe("string")
        const next = yield* call("GET", `/tasks?limit=1&cursor=${encodeURIComponent(page.body.nextCursor)}`)
        expect(next.body.tasks[0].id).not.toBe(page.body.tasks[0].id)
        expectProblem(yield* call("GET", "/tasks?limit=0"), 400)
        expectProblem(yield* call("GET", "/tasks?status=sleeping"), 400)
        // Newest first, paged the other way.
        const newest = yield* call("GET", "/tasks?limit=1&order=desc")
        expect(newest.status).toBe(200)
        expect(newest.body.tasks.map((t: any) => t.id)).toEqual([keyed.body.id])
        const older = yield* call("GET", `/tasks?limit=1&order=desc&cursor=${encodeURIComponent(newest.body.nextCursor)}`)
        expect(older.body.tasks.map((t: any) => t.id)).toEqual([id])
        expect(older.body.nextCursor).toBeUndefined()
        expectProblem(yield* call("GET", "/tasks?order=sideways"), 400)

        expectProblem(yield* call("POST", `/tasks/${id}/retry`), 409)
        const cancelled = yield* call("POST", `/tasks/${id}/cancel`)
        expect(cancelled.body).toEqual({ id, cancelled: true, status: "cancelled", previousStatus: "queued" })
        expect((yield* call("POST", `/tasks/${id}/cancel`)).body).toEqual({ id, cancelled: false, status: "cancelled", previousStatus: null })
        expectProblem(yield* call("POST", "/tasks/not-a-uuid/cancel"), 404)
        expectProblem(yield* call("POST", "/tasks/not-a-uuid/retry"), 404)

        // A failed task: retried once, then it is not failed any more.
        const failed = yield* call("POST", "/tasks", { body: { type: "refuse", payload: {} } })
        yield* outcomeOf(context, failed.body.id)
        const retried = yield* call("POST", `/tasks/${failed.body.id}/retry`)
        expect(retried.status).toBe(200)
        expect(retried.body).toMatchObject({ id: failed.body.id, attempt: 0 })
      }).pipe(Effect.scoped))

    it.effect("dead letters, queues, jobs and the OpenAPI document", () =>
      Effect.gen(function*() {
        const { call, context } = yield* start()
        const failed = yield* call("POST", "/tasks", { body: { type: "refuse", payload: {} } })
        yield* outcomeOf(context, failed.body.id)
        const letters = yield* call("GET", "/dead-letters?type=refuse&source=task&limit=10")
        expect(letters.status).toBe(200)
        const letter = letters.body.letters.find((l: any) => l.taskId === failed.body.id)
        expect(letter).toMatchObject({ source: "task", type: "refuse", createdAt: expect.any(String), replayedAt: null })
        const replayed = yield* call("POST", `/dead-letters/${letter.id}/replay`)
        expect(replayed.status).toBe(200)
        expect(replayed.body.task).toMatchObject({ id: failed.body.id })
        yield* outcomeOf(context, failed.body.id)
        expectProblem(yield* call("POST", "/dead-letters/0190f5d2-0000-7000-8000-000000000000/replay"), 404)
        expectProblem(yield* call("POST", "/dead-letters/nope/replay"), 404)
        const all = yield* call("POST", "/dead-letters/replay", { body: { type: "refuse" } })
        expect(all.status).toBe(200)
        // This file's earlier failed tasks are in the same database: every one is replayed.
        expect(all.body.total).toBeGreaterThanOrEqual(1)
        expect(all.body).toEqual({ total: all.body.total, replayed: all.body.total, skipped: 0 })
        // Without a type: every failed task's letter (the replayed ones may have failed again meanwhile).
        const again = yield* call("POST", "/dead-letters/replay", { body: {} })
        expect(again.status).toBe(200)
        expect(again.body.replayed + again.body.skipped).toBeLessThanOrEqual(again.body.total)

        const paused = yield* call("POST", `/queues/${queue}/pause`, { body: { reason: "deploy" } })
        expect(paused.body).toEqual({ queue, paused: true, changed: true })
        expect((yield* call("POST", `/queues/${queue}/pause`, { body: {} })).body.changed).toBe(false)
        const listed = yield* call("GET", "/queues")
        expect(listed.status).toBe(200)
        expect(listed.body.find((q: any) => q.queue === queue)).toMatchObject({ paused: { reason: "deploy", since: expect.any(String) } })
        expect((yield* call("POST", `/queues/${queue}/resume`)).body).toEqual({ queue, paused: false, changed: true })
        expect((yield* call("POST", `/queues/${queue}/resume`)).body.changed).toBe(false)

        const registered = yield* call("GET", "/jobs")
        expect(registered.body.map((j: any) => j.name)).toEqual(["greet", "refuse"])
        expect(registered.body[0].payloadSchema).toMatchObject({ type: "object", properties: { name: { type: "string" } } })

        const openapi = yield* call("GET", "/openapi.json")
        expect(openapi.status).toBe(200)
        const paths = Object.entries(openapi.body.paths as Record<string, Record<string, unknown>>)
          .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ":$1")}`))
        expect([...paths].sort()).toEqual([...AdminApi.routes].sort())

        // The probes stay open.
        expect((yield* call("GET", "/health/live")).status).toBe(200)
        expect((yield* call("GET", "/metrics")).status).toBe(200)
      }).pipe(Effect.scoped))

    it.effect("auth: the token for writes, for reads when required; 401 with WWW-Authenticate", () =>
      Effect.gen(function*() {
        const { call } = yield* start({ ADMIN_TOKEN: "t0ken-xyz", ADMIN_READ_TOKEN_REQUIRED: "false" })
        const body = { type: "greet", payload: { name: "a" }, runAt: later() }
        const missing = yield* call("POST", "/tasks", { body })
        expectProblem(missing, 401)
        expect(missing.headers.get("www-authenticate")).toBe("Bearer")
        expect(JSON.stringify(missing.body)).not.toContain("t0ken-xyz")
        expectProblem(yield* call("POST", "/tasks", { body, headers: { authorization: "Bearer wrong" } }), 401)
        expectProblem(yield* call("POST", `/queues/${queue}/pause`, { body: {}, headers: { authorization: "Basic dDB rZW4teHl6" } }), 401)
        expect((yield* call("POST", "/tasks", { body, headers: { authorization: "Bearer t0ken-xyz" } })).status).toBe(201)
        expect((yield* call("GET", "/tasks")).status).toBe(200)

        const strict = yield* start({ ADMIN_TOKEN: "t0ken-xyz", ADMIN_READ_TOKEN_REQUIRED: "true" })
        expectProblem(yield* strict.call("GET", "/tasks"), 401)
        expectProblem(yield* strict.call("GET", "/jobs", { headers: { authorization: "Bearer nope" } }), 401)
        expect((yield* strict.call("GET", "/jobs", { headers: { authorization: "Bearer t0ken-xyz" } })).status).toBe(200)
        expect((yield* strict.call("GET", "/health/live")).status).toBe(200)
      }).pipe(Effect.scoped))

    it.effect("no token on a public address: writes refused with 403 saying how to set one", () =>
      Effect.gen(function*() {
        const { call } = yield* start({}, "0.0.0.0")
        const refused = yield* call("POST", `/queues/${queue}/pause`, { body: {} })
        expectProblem(refused, 403)
        expect(refused.body.detail).toContain("ADMIN_TOKEN")
        expect((yield* call("GET", "/queues")).status).toBe(200)
      }).pipe(Effect.scoped))

    it.effect("a body over ADMIN_MAX_BODY_BYTES is 413, with or without Content-Length", () =>
      Effect.gen(function*() {
        const { call, port } = yield* start({ ADMIN_MAX_BODY_BYTES: "1024" })
        const big = JSON.stringify({ type: "greet", payload: { name: "x".repeat(4096) } })
        expectProblem(yield* call("POST", "/tasks", { raw: big, headers: { "content-type": "application/json" } }), 413)
        const chunked = yield* Effect.promise(() =>
          fetch(`http://127.0.0.1:${port}/tasks`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            duplex: "half",
            body: new ReadableStream<Uint8Array>({
              start(controller) {
                controller.enqueue(new TextEncoder().encode(big))
                controller.close()
              }
            })
          } as RequestInit).then(async (r) => ({ status: r.status, type: r.headers.get("content-type") ?? "", headers: r.headers, body: await r.json() }))
        )
        expectProblem(chunked, 413)
        expect((yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "small" }, runAt: later() } })).status).toBe(201)
      }).pipe(Effect.scoped))

    it.effect("fuzz: no 5xx, and without the token no state changes", () =>
      Effect.gen(function*() {
        const { call } = yield* start({ ADMIN_TOKEN: "fuzz-token", ADMIN_MAX_BODY_BYTES: "65536" })
        const before = yield* counts
        const methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        const templates = [...AdminApi.routes.map((r) => r.split(" ")[1]!), "/openapi.json", "/health", "/", "/tasks/", "//tasks", "/tasks/%00"]
        let seed = 12345
        const rand = (n: number) => {
          seed = (seed * 1103515245 + 12345) % 2147483648
          return seed % n
        }
        const junk = () => Array.from({ length: rand(40) }, () => String.fromCharCode(rand(0x7f - 0x20) + 0x20)).join("")
        const bodies: Array<() => string | undefined> = [
          () => undefined,
          () => junk(),
          () => JSON.stringify({ type: ["greet", "refuse", junk()][rand(3)], payload: [{ name: junk() }, junk(), null, 1, [], {}][rand(6)], priority: [1, "x", -1e9, 2.5][rand(4)], runAt: [junk(), later()][rand(2)], id: [junk(), "0190f5d2-0000-7000-8000-000000000000"][rand(2)] }),
          () => JSON.stringify({ reason: junk(), type: rand(2) === 0 ? junk() : 7 }),
          () => "x".repeat(70_000),
          () => "[".repeat(5_000),
          () => "{\"type\":\"greet\",\"payload\":" + "{\"a\":".repeat(2_000) + "1" + "}".repeat(2_001)
        ]
        const authHeaders = [{}, { authorization: "Bearer wrong" }, { authorization: "Bearer " }, { authorization: junk() }, { authorization: "Bearer fuzz-tokenX" }]
        for (let i = 0; i < 300; i++) {
          const path = templates[rand(templates.length)]!.replace(":id", [junk(), "0190f5d2-0000-7000-8000-000000000000"][rand(2)]!.replace(/[/?#]/g, "")).replace(":name", encodeURIComponent(junk() || "q")) +
            (rand(3) === 0 ? `?limit=${junk()}&status=${junk()}` : "")
          const method = methods[rand(methods.length)]!
          const raw = method === "GET" ? undefined : bodies[rand(bodies.length)]!()
          const headers: Record<string, string> = { ...authHeaders[rand(authHeaders.length)]!, ...(rand(2) === 0 ? { "content-type": ["application/json", "text/plain", junk()][rand(3)]! } : {}) }
          if (rand(5) === 0) headers["idempotency-key"] = junk()
          const answer = yield* call(method, encodeURI(path).replace(/%25/g, "%"), raw === undefined ? { headers } : { raw, headers })
          if (answer.status >= 500) throw new Error(`${method} ${path} -> ${answer.status} ${JSON.stringify(answer.body)}`)
        }
        expect(yield* counts).toEqual(before)
      }).pipe(Effect.scoped))
  })
})
