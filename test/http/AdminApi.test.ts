/**
 * The admin HTTP API on a real server and database: every route's answers and
 * problems, idempotent enqueues, the bearer rules, the body limit, the OpenAPI
 * document, and a property over generated batches of requests (methods, the
 * real routes with odd ids and names, junk paths and queries, right and wrong
 * tokens, content types, bodies of right and wrong shapes, deep, malformed, just
 * under and over the limit): no 5xx, every API error a problem with its status,
 * and without the token no change to the state.
 */
import * as http from "node:http"
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

/** A request with a `Host` of the test's choosing (fetch replaces it with the URL's). */
const rawRequest = (port: number, method: string, path: string, headers: Record<string, string>) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on("error", reject)
    req.end()
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
  const [deadLetters] = yield* sql<{ n: number }>`select count(*)::int as n from taskfiber.dead_letters`
  return { tasks: tasks!.n, paused: paused!.n, revisions: revisions!.n, deadLetters: deadLetters!.n }
})

// ---------------------------------------------------------------------------
// fuzz requests, generated from these schemas

const token = "fuzz-token"
const maxBody = 16_384
const Small = (max: number) => Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: max }))

/** An id or a queue name: a real one, a UUID, ASCII, any code points, a very long run, URL escapes. */
const Segment = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("known"), pick: Small(1_000) }),
  Schema.Struct({ kind: Schema.Literal("uuid"), n: Small(2 ** 31) }),
  Schema.Struct({ kind: Schema.Literal("ascii"), text: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("unicode"), points: Schema.Array(Small(0x10ffff)).check(Schema.isMaxLength(24)) }),
  Schema.Struct({ kind: Schema.Literal("long"), length: Schema.Int.check(Schema.isBetween({ minimum: 200, maximum: 8_000 })) }),
  Schema.Struct({ kind: Schema.Literal("escape"), text: Schema.Literals(["%00", "%zz", "%ff%fe", "..", "%2e%2e", "%2F", "%", "", " ", "%E2%82"]) })
])
type Segment = typeof Segment.Type

const Path = Schema.Union([
  Schema.Struct({ route: Schema.Literals(["/tasks", "/dead-letters", "/dead-letters/replay", "/queues", "/jobs", "/openapi.json"]) }),
  Schema.Struct({ route: Schema.Literals(["/tasks/:id", "/tasks/:id/cancel", "/tasks/:id/retry", "/dead-letters/:id/replay"]), id: Segment }),
  Schema.Struct({ route: Schema.Literals(["/queues/:name/pause", "/queues/:name/resume"]), name: Segment }),
  Schema.Struct({ route: Schema.Literals(["/", "/health", "/tasks/", "//tasks", "/tasks/%00", "/openapi.json/x", "/queues//pause"]) }),
  Schema.Struct({ route: Schema.Literal("junk"), segments: Schema.Array(Segment).check(Schema.isMaxLength(4)) })
])
type Path = typeof Path.Type

const Query = Schema.Array(Schema.Struct({
  key: Schema.Union([Schema.Literals(["limit", "status", "cursor", "type", "queue", "source"]), Schema.String]),
  value: Segment
})).check(Schema.isMaxLength(4))

/** The Authorization header: the right token only when `roll` is 0 (one request in 16). */
const Auth = Schema.Struct({
  roll: Small(15),
  kind: Schema.Literals(["none", "wrong", "empty", "longer", "shorter", "basic", "bare", "junk"]),
  junk: Schema.String
})
type Auth = typeof Auth.Type

const ContentType = Schema.Union([
  Schema.Literals(["application/json", "application/json; charset=utf-8", "text/plain", "application/problem+json", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", ""]),
  Schema.String
])

const Body = Schema.Union([
  Schema.Struct({ kind: Schema.Literal("none") }),
  Schema.Struct({
    kind: Schema.Literal("enqueue"),
    type: Schema.Union([Schema.Literals(["greet", "refuse"]), Schema.String, Schema.Number]),
    payload: Schema.optional(Schema.Json),
    queue: Schema.optional(Schema.Union([Schema.Literal(queue), Schema.String])),
    priority: Schema.optional(Schema.Union([Schema.Int, Schema.Number, Schema.String])),
    runAt: Schema.optional(Schema.Union([Schema.Literal("later"), Schema.String, Schema.Number])),
    delayMs: Schema.optional(Schema.Union([Schema.Int, Schema.Number])),
    maxAttempts: Schema.optional(Schema.Union([Schema.Int, Schema.String])),
    id: Schema.optional(Segment),
    dedupeKey: Schema.optional(Schema.String),
    removeOnComplete: Schema.optional(Schema.Union([Schema.Boolean, Schema.String]))
  }),
  Schema.Struct({ kind: Schema.Literal("pause"), reason: Schema.optional(Schema.Json) }),
  Schema.Struct({ kind: Schema.Literal("replay"), type: Schema.optional(Schema.Union([Schema.String, Schema.Number, Schema.Null])) }),
  Schema.Struct({ kind: Schema.Literal("json"), value: Schema.Json }),
  Schema.Struct({ kind: Schema.Literal("deep"), depth: Schema.Int.check(Schema.isBetween({ minimum: 50, maximum: 5_000 })), open: Schema.Literals(["[", "{\"a\":", "{\"type\":\"greet\",\"payload\":"]) }),
  Schema.Struct({ kind: Schema.Literal("text"), text: Schema.String }),
  Schema.Struct({ kind: Schema.Literal("size"), delta: Schema.Int.check(Schema.isBetween({ minimum: -32, maximum: 32 })) })
])
type Body = typeof Body.Type

const FuzzRequest = Schema.Struct({
  method: Schema.Literals(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
  path: Path,
  query: Schema.optional(Query),
  auth: Auth,
  contentType: Schema.optional(ContentType),
  idempotencyKey: Schema.optional(Schema.String),
  body: Body
})
type FuzzRequest = typeof FuzzRequest.Type

/** Printable ASCII only: fetch refuses other header values. */
const headerSafe = (s: string) => s.replace(/[^\x20-\x7e]/g, "")

/** Lone surrogates have no UTF-8 form (encodeURIComponent throws on them); U+FFFD stands for them. */
const wellFormed = (s: string) => s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")

const textOf = (segment: Segment, known: ReadonlyArray<string>): string => {
  switch (segment.kind) {
    case "known":
      return known.length === 0 ? "none" : known[segment.pick % known.length]!
    case "uuid":
      return `0190f5d2-0000-7000-8000-${segment.n.toString(16).padStart(12, "0")}`
    case "ascii":
      return wellFormed(segment.text)
    case "unicode":
      return segment.points.map((p) => String.fromCodePoint(p >= 0xd800 && p <= 0xdfff ? 0xfffd : p)).join("")
    case "long":
      return "é".repeat(segment.length)
    case "escape":
      return segment.text
  }
}
const inPath = (segment: Segment, known: ReadonlyArray<string>) =>
  segment.kind === "escape" ? segment.text : encodeURIComponent(textOf(segment, known))

interface Known {
  readonly tasks: ReadonlyArray<string>
  readonly letters: ReadonlyArray<string>
  readonly queues: ReadonlyArray<string>
}

const pathOf = (path: Path, known: Known): string => {
  if ("id" in path) return path.route.replace(":id", inPath(path.id, path.route.startsWith("/dead-letters") ? known.letters : known.tasks))
  if ("name" in path) return path.route.replace(":name", inPath(path.name, known.queues))
  if (path.route === "junk") return "/" + path.segments.map((s) => inPath(s, known.tasks)).join("/")
  return path.route
}

/**
 * Whether `path` (as the URL parser normalizes it: `..` and `.` segments go)
 * reaches one of the admin API's routes with `method`. Other requests are
 * answered by the router with an empty 404, not by the API; so is a path
 * parameter over the router's 100 characters (as sent, percent-encoded) or
 * with escapes that are not UTF-8.
 */
const isAdminRoute = (method: string, generated: Path, path: string) =>
  AdminApi.routes.includes(`${method} ${generated.route}`) &&
  new RegExp(`^${generated.route.replace(/:\w+/, "[^/]{1,100}")}$`).test(new URL(path, "http://x").pathname) &&
  decodes(new URL(path, "http://x").pathname)

/** Whether a path's escapes decode as UTF-8 (the router answers 404 to others). */
const decodes = (pathname: string) => {
  try {
    decodeURIComponent(pathname)
    return true
  } catch {
    return false
  }
}

const authorizationOf = (auth: Auth): string | undefined => {
  if (auth.roll === 0) return `Bearer ${token}`
  switch (auth.kind) {
    case "none":
      return undefined
    case "wrong":
      return "Bearer wrong"
    case "empty":
      return "Bearer "
    case "longer":
      return `Bearer ${token}X`
    case "shorter":
      return `Bearer ${token.slice(0, -1)}`
    case "basic":
      return `Basic ${token}`
    case "bare":
      return token
    case "junk":
      return headerSafe(auth.junk)
  }
}

/** A body of exactly `maxBody + delta` bytes: a valid enqueue, padded in its payload. */
const sized = (delta: number) => {
  const shell = (pad: string) => JSON.stringify({ type: "greet", payload: { name: pad }, runAt: "2999-01-01T00:00:00.000Z" })
  return shell("x".repeat(maxBody + delta - shell("").length))
}

const bodyOf = (body: Body, known: Known): string | undefined => {
  switch (body.kind) {
    case "none":
      return undefined
    case "enqueue": {
      const { kind: _, id, runAt, ...rest } = body
      return JSON.stringify({
        ...rest,
        ...(id === undefined ? {} : { id: textOf(id, known.tasks) }),
        ...(runAt === undefined ? {} : { runAt: runAt === "later" ? later() : runAt })
      })
    }
    case "pause":
      return JSON.stringify(body.reason === undefined ? {} : { reason: body.reason })
    case "replay":
      return JSON.stringify(body.type === undefined ? {} : { type: body.type })
    case "json":
      return JSON.stringify(body.value)
    case "deep":
      return body.open.repeat(body.depth) + "1" + (body.open === "[" ? "]" : "}").repeat(body.depth + (body.open.startsWith("{\"type\"") ? 1 : 0))
    case "text":
      return body.text
    case "size":
      return sized(body.delta)
  }
}

type Counts = typeof counts extends Effect.Effect<infer A, any, any> ? A : never

/**
 * What a request with the right token may change: nothing unless it succeeded
 * and writes; then only what its route owns.
 */
const expectAllowedChange = (method: string, path: Path, status: number, before: Counts, after: Counts) => {
  if (status >= 300 || method !== "POST" || path.route === "junk") return expect(after).toEqual(before)
  switch (path.route) {
    case "/tasks":
      expect(after.tasks - before.tasks).toBeOneOf([0, 1])
      expect(after.revisions).toBeGreaterThanOrEqual(before.revisions)
      return expect({ ...after, tasks: 0, revisions: 0 }).toEqual({ ...before, tasks: 0, revisions: 0 })
    case "/tasks/:id/cancel":
    case "/tasks/:id/retry":
      expect(after.tasks).toBe(before.tasks)
      expect(after.revisions).toBeGreaterThanOrEqual(before.revisions)
      expect(after.deadLetters).toBeLessThanOrEqual(before.deadLetters)
      return expect(after.paused).toBe(before.paused)
    case "/dead-letters/replay":
    case "/dead-letters/:id/replay":
      expect(after.tasks).toBeGreaterThanOrEqual(before.tasks)
      expect(after.revisions).toBeGreaterThanOrEqual(before.revisions)
      expect(after.deadLetters).toBeLessThanOrEqual(before.deadLetters)
      return expect(after.paused).toBe(before.paused)
    case "/queues/:name/pause":
    case "/queues/:name/resume":
      expect(after.paused - before.paused).toBeOneOf(path.route.endsWith("pause") ? [0, 1] : [0, -1])
      return expect({ ...after, paused: 0 }).toEqual({ ...before, paused: 0 })
    default:
      return expect(after).toEqual(before)
  }
}

/**
 * The fuzz's server (token set, a small body limit) and the ids and names its
 * requests pick from. The job's queue is paused meanwhile, so that no task runs
 * and only the requests change the state.
 */
class FuzzServer extends Context.Service<FuzzServer, {
  readonly call: Effect.Success<ReturnType<typeof start>>["call"]
  readonly known: Known
}>()("test/FuzzServer") {}

const fuzzServer = Layer.effect(FuzzServer, Effect.gen(function*() {
  const { call } = yield* start({ ADMIN_TOKEN: token, ADMIN_MAX_BODY_BYTES: String(maxBody) })
  const authorization = { authorization: `Bearer ${token}` }
  const paused = yield* call("POST", `/queues/${queue}/pause`, { body: { reason: "fuzz" }, headers: authorization })
  expect(paused.status).toBe(200)
  if (paused.body.changed) yield* Effect.addFinalizer(() => call("POST", `/queues/${queue}/resume`, { headers: authorization }))
  const sql = yield* SqlClient
  const tasks = (yield* sql<{ id: string }>`select id from taskfiber.tasks order by id limit 50`).map((r) => r.id)
  const letters = (yield* sql<{ id: string }>`select id from taskfiber.dead_letters order by id limit 50`).map((r) => r.id)
  return { call, known: { tasks, letters, queues: [queue, "default", "fuzz"] } }
}).pipe(Effect.orDie))


describe("AdminConfig.decide", () => {
  const token = Option.some(Redacted.make("s3cret"))
  it("reads are open unless ADMIN_READ_TOKEN_REQUIRED", () => {
    expect(AdminConfig.decide({ write: false, token, presented: undefined, readTokenRequired: false, loopback: false, crossOrigin: false, loopbackHost: true })).toBe("allow")
    expect(AdminConfig.decide({ write: false, token, presented: undefined, readTokenRequired: true, loopback: true, crossOrigin: false, loopbackHost: true })).toBe("unauthorized")
    expect(AdminConfig.decide({ write: false, token, presented: "s3cret", readTokenRequired: true, loopback: false, crossOrigin: false, loopbackHost: true })).toBe("allow")
  })
  it("writes need the token; without one configured, only on loopback", () => {
    expect(AdminConfig.decide({ write: true, token, presented: "wrong", readTokenRequired: false, loopback: true, crossOrigin: false, loopbackHost: true })).toBe("unauthorized")
    expect(AdminConfig.decide({ write: true, token, presented: "s3cret", readTokenRequired: false, loopback: false, crossOrigin: false, loopbackHost: true })).toBe("allow")
    expect(AdminConfig.decide({ write: true, token: Option.none(), presented: undefined, readTokenRequired: false, loopback: true, crossOrigin: false, loopbackHost: true })).toBe("allow")
    expect(AdminConfig.decide({ write: true, token: Option.none(), presented: "x", readTokenRequired: false, loopback: false, crossOrigin: false, loopbackHost: true })).toBe("forbidden")
  })
  it("without a token on loopback: no change from a page of another origin, nothing for a foreign Host", () => {
    const open = { token: Option.none(), presented: undefined, readTokenRequired: false, loopback: true } as const
    expect(AdminConfig.decide({ ...open, write: true, crossOrigin: true, loopbackHost: true })).toBe("cross-origin")
    expect(AdminConfig.decide({ ...open, write: false, crossOrigin: true, loopbackHost: true })).toBe("allow")
    expect(AdminConfig.decide({ ...open, write: false, crossOrigin: false, loopbackHost: false })).toBe("foreign-host")
    expect(AdminConfig.decide({ ...open, write: true, crossOrigin: false, loopbackHost: true })).toBe("allow")
    // With a token a page cannot borrow it: the bearer decides.
    expect(AdminConfig.decide({ write: true, token, presented: "s3cret", readTokenRequired: false, loopback: true, crossOrigin: true, loopbackHost: false })).toBe("allow")
    expect(AdminConfig.decide({ write: true, token, presented: undefined, readTokenRequired: false, loopback: true, crossOrigin: true, loopbackHost: true })).toBe("unauthorized")

    const host = "127.0.0.1:8080"
    expect(AdminConfig.isCrossOrigin({ host })).toBe(false)
    expect(AdminConfig.isCrossOrigin({ host, origin: "http://127.0.0.1:8080", "sec-fetch-site": "same-origin" })).toBe(false)
    expect(AdminConfig.isCrossOrigin({ host, "sec-fetch-site": "none" })).toBe(false)
    expect(AdminConfig.isCrossOrigin({ host, "sec-fetch-site": "cross-site" })).toBe(true)
    // Another port of the same machine is "same-site" to a browser, and another origin all the same.
    expect(AdminConfig.isCrossOrigin({ host, "sec-fetch-site": "same-site" })).toBe(true)
    expect(AdminConfig.isCrossOrigin({ host, origin: "http://127.0.0.1:3000" })).toBe(true)
    expect(AdminConfig.isCrossOrigin({ host, origin: "null" })).toBe(true)
    expect(AdminConfig.isCrossOrigin({ host: "localhost:80", origin: "http://localhost" })).toBe(false)
    expect(AdminConfig.isCrossOrigin({ origin: "http://localhost" })).toBe(true)

    expect(["127.0.0.1:8080", "[::1]:8080", "localhost", "LOCALHOST:1", "[::1]"].map(AdminConfig.hostName)).toEqual(["127.0.0.1", "::1", "localhost", "LOCALHOST", "::1"])
    expect(AdminConfig.hostName("rebound.example:8080")).toBe("rebound.example")
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
        // A body that is not JSON, and a NUL, which PostgreSQL's text and jsonb cannot hold.
        const notJson = yield* call("POST", "/tasks", { raw: "type=greet", headers: { "content-type": "application/x-www-form-urlencoded" } })
        expectProblem(notJson, 415)
        expect(notJson.body.detail).toContain("application/json")
        const nulPayload = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "a\u0000b" }, runAt: later() } })
        expectProblem(nulPayload, 400)
        expect(nulPayload.body.field).toBe("payload")
        const nulKey = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "x" }, dedupeKey: "a\u0000b", runAt: later() } })
        expectProblem(nulKey, 400)
        const nulFilter = yield* call("GET", "/tasks?type=a%00b")
        expectProblem(nulFilter, 400)
        expect(nulFilter.body.detail).toMatch(/^the database refused a value/)
        const nulQueue = yield* call("POST", "/queues/a%00b/pause", { body: {} })
        expectProblem(nulQueue, 400)
        expect(nulQueue.body.detail).toMatch(/^the database refused a value/)

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
        const badCursor = yield* call("GET", "/tasks?cursor=garbage")
        expectProblem(badCursor, 400)
        expect(badCursor.body.field).toBe("cursor")
        expectProblem(yield* call("GET", "/dead-letters?cursor=garbage"), 400)

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
        expect(openapi.body.info).toMatchObject({ title: "taskfiber admin API", version: expect.stringMatching(/^\d+\.\d+\.\d+/) })
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

    it.effect("on loopback without a token: a change from a page of another origin is refused, a foreign Host gets nothing", () =>
      Effect.gen(function*() {
        const { call, port } = yield* start()
        const created = yield* call("POST", "/tasks", { body: { type: "greet", payload: { name: "x" }, runAt: later() } })
        expect(created.status).toBe(201)
        const cancel = `/tasks/${created.body.id}/cancel`
        for (const headers of [{ origin: "http://attacker.example" }, { "sec-fetch-site": "cross-site" }, { origin: "null" }]) {
          const refused = yield* call("POST", cancel, { headers })
          expectProblem(refused, 403)
          expect(refused.body.detail).toContain("another origin")
        }
        expect((yield* call("GET", `/tasks/${created.body.id}`)).body.task.status).toBe("queued")
        // Reads stay open to it; the server's own origin (its dashboard) may change state.
        expect((yield* call("GET", "/queues", { headers: { origin: "http://attacker.example" } })).status).toBe(200)
        const own = yield* call("POST", cancel, { headers: { origin: `http://127.0.0.1:${port}`, "sec-fetch-site": "same-origin" } })
        expect(own.body).toMatchObject({ cancelled: true })
        // A name an attacker re-pointed at 127.0.0.1 (DNS rebinding) reads nothing either.
        const rebound = yield* Effect.promise(() => rawRequest(port, "GET", "/tasks", { host: `rebound.example:${port}` }))
        expect(rebound.status).toBe(403)
        expect(rebound.body).toContain("rebound.example")
        expect((yield* Effect.promise(() => rawRequest(port, "GET", "/tasks", { host: `localhost:${port}` }))).status).toBe(200)
      }).pipe(Effect.scoped))

    it.effect("a database failure no repeat cures is a 500 that names nothing of the database", () =>
      Effect.gen(function*() {
        const { call } = yield* start()
        const sql = yield* SqlClient
        // Schema drift, as a half-applied deploy would leave it; restored after.
        yield* sql`alter function taskfiber.pause_queue(text, text) rename to pause_queue_gone`
        yield* Effect.addFinalizer(() => sql`alter function taskfiber.pause_queue_gone(text, text) rename to pause_queue`.pipe(Effect.orDie))
        const failed = yield* call("POST", "/queues/drift/pause", { body: {} })
        expectProblem(failed, 500)
        expect(failed.body).toMatchObject({ type: "urn:taskfiber:problem:internal", detail: "the database failed; the server's log has the cause" })
        expect(JSON.stringify(failed.body)).not.toMatch(/pause_queue|taskfiber\.|42883/)
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

    // Batches of generated requests. Each answer is below 500 and each error a
    // problem whose `status` is the HTTP status; the state (tasks and their
    // revisions, paused queues, dead letters) is measured around each batch and
    // around each request with the right token: requests without it change
    // nothing, and one with it only what its route owns.
    it.layer(fuzzServer, { timeout: 60_000 })("fuzz", (it) => {
      it.effect.prop(
        "no 5xx, errors are problems, and without the token no state changes",
        { batch: Schema.Array(FuzzRequest).check(Schema.isMinLength(1), Schema.isMaxLength(12)) },
        ({ batch }) =>
          Effect.gen(function*() {
            const { call, known } = yield* FuzzServer
            let expected = yield* counts
            for (const request of batch) {
              const path = pathOf(request.path, known) +
                (request.query === undefined || request.query.length === 0
                  ? ""
                  : "?" + request.query.map((q) => `${encodeURIComponent(wellFormed(q.key))}=${inPath(q.value, known.tasks)}`).join("&"))
              const raw = bodyOf(request.body, known)
              const authorization = authorizationOf(request.auth)
              const headers: Record<string, string> = {
                ...(authorization === undefined ? {} : { authorization }),
                ...(request.contentType === undefined ? {} : { "content-type": headerSafe(request.contentType) }),
                ...(request.idempotencyKey === undefined ? {} : { "idempotency-key": headerSafe(request.idempotencyKey) })
              }
              const send = request.method === "GET" || raw === undefined ? { headers } : { raw, headers }
              const authorized = request.auth.roll === 0
              if (authorized) expect(yield* counts, "changed without the token").toEqual(expected)
              const answer = yield* call(request.method, path, send)
              const what = `${request.method} ${path.slice(0, 200)} -> ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`
              // A 431 (a URL over Node's 16 KiB of headers) is Node's own answer, before the API.
              expect(answer.status, what).toBeLessThan(500)
              if (answer.status >= 400 && answer.status !== 431 && isAdminRoute(request.method, request.path, path)) {
                expect(answer.type, what).toMatch(/^application\/problem\+json/)
                expect(answer.body?.status, what).toBe(answer.status)
              }
              if (authorized) {
                const after = yield* counts
                expectAllowedChange(request.method, request.path, answer.status, expected, after)
                expected = after
              }
            }
            expect(yield* counts, "changed without the token").toEqual(expected)
          }),
        { timeout: 60_000, arbitrary: { runs: 150 } }
      )
    })
  })
})
