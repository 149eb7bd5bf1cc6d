/**
 * The admin HTTP API served (AdminApi's definition): handlers over `Admin`,
 * `QueuePauses` and enqueue by name; the bearer check (AdminConfig.decide); request
 * decoding failures as problems naming the field; and the body limit, checked on
 * `Content-Length` before anything is read and on the bytes read for a body sent
 * without one. The routes go on the HttpServer's router beside the probes.
 *
 * `POST /tasks` is idempotent: a task whose `id` or `dedupeKey` was seen already is
 * answered 200 with the existing task, nothing written. An `Idempotency-Key` header
 * is the dedupe key when the body gives none, so a client retrying a request it got
 * no answer to cannot enqueue twice.
 */
import { ByteSize, Effect, Layer, Option, Redacted, Schema, SchemaIssue, Stream } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { HttpApiBuilder, HttpApiMiddleware } from "effect/http-api"
import { Admin } from "../admin/Admin.ts"
import { Task } from "../domain/Task.ts"
import type { InvalidCursor } from "../store/Cursor.ts"
import type { DatabaseError } from "../store/DatabaseError.ts"
import { JobRegistry } from "../runtime/JobRegistry.ts"
import * as Tasks from "../runtime/Tasks.ts"
import { QueuePauses } from "../store/QueuePauses.ts"
import {
  AdminApi,
  AdminAuth,
  BadRequest,
  Conflict,
  Internal,
  NotFound,
  openapiPath,
  RequestProblems,
  Unavailable
} from "./AdminApi.ts"
import * as AdminConfig from "./AdminConfig.ts"

// ---------------------------------------------------------------------------
// problems

/** A problem response built by hand (for the answers that carry headers or come before the API). */
const problem = (body: { readonly type: string; readonly title: string; readonly status: number; readonly detail: string }, headers: Record<string, string> = {}) =>
  HttpServerResponse.jsonUnsafe(body, { status: body.status, contentType: "application/problem+json", headers })

/**
 * The database's failures. A value it refuses (SQLSTATE class 22: a NUL in a name
 * or a filter, which text cannot hold) is the caller's 400, with the server's
 * sentence; one the call may outlive (connection, timeout, serialization,
 * deadlock) a 503 to repeat; any other a 500. Neither 5xx says more (the cause may
 * name hosts): the log has it.
 */
const fromStoreFailures = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    self,
    (e): e is Extract<E, { readonly _tag: "DatabaseError" }> => (e as { readonly _tag?: unknown })._tag === "DatabaseError",
    (e): Effect.Effect<never, BadRequest | Internal | Unavailable> => {
      const failure = e as unknown as DatabaseError
      const cause = { category: failure.category, sqlstate: failure.sqlstate, cause: failure.message }
      if (failure.category === "data") {
        return Effect.logInfo("admin api: the database refused a value", cause).pipe(
          Effect.andThen(Effect.fail(new BadRequest({ detail: `the database refused a value: ${failure.message}` })))
        )
      }
      return failure.retryable
        ? Effect.logWarning("admin api: the database failed", cause).pipe(
          Effect.andThen(Effect.fail(new Unavailable({ detail: "the database is unavailable; try again" })))
        )
        : Effect.logError("admin api: the database failed", cause).pipe(
          Effect.andThen(Effect.fail(new Internal({ detail: "the database failed; the server's log has the cause" })))
        )
    }
  )

/** A cursor no page gave: the caller's to fix, not a first page again. */
const badCursor = (e: InvalidCursor) => Effect.fail(new BadRequest({ detail: e.message, field: "cursor" }))

/** The first issue of a schema failure: its path (dot-separated) and message. */
const firstIssue = (error: Schema.SchemaError) => {
  const first = SchemaIssue.makeFormatterStandardSchemaV1()(error.issue).issues[0]
  const path = (first?.path ?? []).map((s) => String(typeof s === "object" ? s.key : s)).join(".")
  return { path, message: first?.message ?? error.message }
}

/** Request decoding failures as a BadRequest naming the field. */
const requestProblems = HttpApiMiddleware.layerSchemaErrorTransform(RequestProblems, (error) => {
  const { message, path } = firstIssue(error.cause)
  const slot = error.kind === "Payload" || error.kind === "Body" ? "body" : error.kind.toLowerCase()
  return Effect.fail(new BadRequest({
    detail: path === "" ? `the ${slot} is invalid: ${message}` : `${path} (in the ${slot}): ${message}`,
    ...(path === "" ? {} : { field: path })
  }))
})

// ---------------------------------------------------------------------------
// auth

const forbidden = (detail: string) =>
  Effect.succeed(problem({ type: "urn:taskfiber:problem:forbidden", title: "Forbidden", status: 403, detail }))

/** The bearer check on `host`'s server (see AdminConfig). */
const auth = (host: string, cfg: AdminConfig.AdminConfig) =>
  Layer.succeed(AdminAuth, AdminAuth.of({
    bearer: (httpEffect, { credential, endpoint }) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const presented = Redacted.value(credential)
        const decision = AdminConfig.decide({
          write: endpoint.method !== "GET",
          token: cfg.token,
          presented: presented === "" ? undefined : presented,
          readTokenRequired: cfg.readTokenRequired,
          loopback: AdminConfig.isLoopback(host),
          crossOrigin: AdminConfig.isCrossOrigin(request.headers),
          loopbackHost: AdminConfig.isLoopback(AdminConfig.hostName(request.headers["host"]))
        })
        switch (decision) {
          case "allow":
            return httpEffect
          case "unauthorized":
            return Effect.succeed(problem({
              type: "urn:taskfiber:problem:unauthorized",
              title: "Unauthorized",
              status: 401,
              detail: presented === "" ? "send Authorization: Bearer <ADMIN_TOKEN>" : "the bearer token is not ADMIN_TOKEN"
            }, { "www-authenticate": "Bearer" }))
          case "cross-origin":
            return forbidden("with no ADMIN_TOKEN, a change from a web page of another origin is refused: use the dashboard " +
              "this server serves, a client that is not a browser, or set ADMIN_TOKEN")
          case "foreign-host":
            return forbidden(`with no ADMIN_TOKEN, the loopback server answers only requests for localhost, 127.0.0.1 or [::1] ` +
              `(this one names ${JSON.stringify(AdminConfig.hostName(request.headers["host"]).slice(0, 100))}); or set ADMIN_TOKEN`)
          case "forbidden":
            return forbidden(`the server listens on ${host}, beyond loopback, and no ADMIN_TOKEN is set: set ADMIN_TOKEN to a secret ` +
              `(e.g. \`openssl rand -hex 32\`) and send it as Authorization: Bearer <token>, or listen on HTTP_HOST=127.0.0.1`)
        }
      })
  }))

// ---------------------------------------------------------------------------
// body limit and media type

const tooLarge = (max: number) =>
  problem({
    type: "urn:taskfiber:problem:payload-too-large",
    title: "Payload too large",
    status: 413,
    detail: `the body is larger than ${max} bytes (ADMIN_MAX_BODY_BYTES)`
  }, { connection: "close" })

const apiUnsupported = new TextEncoder().encode("Unsupported content-type")
const isApiUnsupported = (response: HttpServerResponse.HttpServerResponse) =>
  response.body._tag === "Uint8Array" && response.body.contentType.startsWith("text/plain") &&
  apiUnsupported.every((byte, i) => (response.body as { readonly body: Uint8Array }).body[i] === byte)

const unsupportedMediaType = (contentType: string | undefined) =>
  problem({
    type: "urn:taskfiber:problem:unsupported-media-type",
    title: "Unsupported media type",
    status: 415,
    detail: `send the body as application/json${contentType === undefined ? "" : ` (not ${JSON.stringify(contentType.slice(0, 100))})`}`
  })

/**
 * Every request's body at most `max` bytes (and a body that is not JSON a 415
 * problem): a larger `Content-Length` is refused before the body is read; a body
 * without one is read into memory only up to `max` (HttpIncomingMessage.MaxBodySize),
 * and refused when it goes past.
 */
const bodyLimit = (max: number) =>
  HttpRouter.middleware((app) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const length = request.headers["content-length"]
      if (length !== undefined && !(Number(length) <= max)) return tooLarge(max)
      if (length === undefined && request.headers["transfer-encoding"] !== undefined) {
        // Read it here, bounded: the API's decoders then see the bytes already read.
        const read = yield* Effect.result(request.arrayBuffer.pipe(Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(max))))
        if (read._tag === "Failure") return tooLarge(max)
      }
      const response = yield* app
      // effect/http-api answers an unsupported content type in plain text: a problem
      // like the rest. Only that answer, not a 415 of routes mounted beside these.
      return response.status === 415 && isApiUnsupported(response) ? unsupportedMediaType(request.headers["content-type"]) : response
    }), { global: true })

// ---------------------------------------------------------------------------
// handlers

const encodeTask = Schema.encodeSync(Schema.toCodecJson(Task))

const tasks = HttpApiBuilder.group(AdminApi, "tasks", (handlers) =>
  Effect.gen(function*() {
    const admin = yield* Admin
    const registry = yield* JobRegistry
    return handlers
      .handle("enqueue", ({ headers, payload: body }) =>
        Effect.gen(function*() {
          const dedupeKey = body.dedupeKey ?? headers["idempotency-key"]
          const { created, id } = yield* Tasks.enqueueByName(registry, body.type, body.payload ?? {}, {
            ...(body.priority === undefined ? {} : { priority: body.priority }),
            ...(body.runAt === undefined ? {} : { runAt: body.runAt }),
            ...(body.queue === undefined ? {} : { queue: body.queue }),
            ...(body.id === undefined ? {} : { id: body.id }),
            ...(dedupeKey === undefined ? {} : { dedupeKey })
          })
          const { task } = yield* admin.getTask(id)
          return HttpServerResponse.jsonUnsafe(encodeTask(task), { status: created ? 201 : 200 })
        }).pipe(
          Effect.catchTags({
            UnknownTaskType: (e) => Effect.fail(new BadRequest({ detail: e.message, field: "type" })),
            QueueNotAllowed: (e) => Effect.fail(new BadRequest({ detail: e.message, field: "queue" })),
            PayloadInvalid: (e) => Effect.fail(new BadRequest({ detail: e.message, field: e.path === "" ? "payload" : `payload.${e.path}` })),
            InvalidEnqueueRequest: (e) => Effect.fail(new BadRequest({ detail: e.message, field: e.field })),
            // Deleted between the write and the read (removeOnComplete, a fast worker): say so plainly.
            TaskNotFound: (e) => Effect.fail(new Unavailable({ detail: `task ${e.id} was enqueued and is gone already` }))
          }),
          fromStoreFailures,
          Effect.provideService(JobRegistry, registry)
        ))
      .handle("get", ({ params }) =>
        admin.getTask(params.id).pipe(
          Effect.catchTag("TaskNotFound", (e) => Effect.fail(new NotFound({ detail: e.message }))),
          fromStoreFailures
        ))
      .handle("list", ({ query }) => admin.listTasks(query).pipe(Effect.catchTag("InvalidCursor", badCursor), fromStoreFailures))
      .handle("cancel", ({ params }) =>
        admin.cancelTask(params.id).pipe(
          Effect.map((r) =>
            r._tag === "Cancelled"
              ? { id: r.id, cancelled: true, status: "cancelled" as const, previousStatus: r.previousStatus }
              : { id: r.id, cancelled: false, status: r.status, previousStatus: null }
          ),
          Effect.catchTag("TaskNotFound", (e) => Effect.fail(new NotFound({ detail: e.message }))),
          fromStoreFailures
        ))
      .handle("retry", ({ params }) =>
        admin.retryTask(params.id).pipe(
          Effect.catchTags({
            TaskNotFound: (e) => Effect.fail(new NotFound({ detail: e.message })),
            TaskNotFailed: (e) => Effect.fail(new Conflict({ detail: e.message }))
          }),
          fromStoreFailures
        ))
  }))

const deadLetters = HttpApiBuilder.group(AdminApi, "deadLetters", (handlers) =>
  Effect.gen(function*() {
    const admin = yield* Admin
    return handlers
      .handle("list", ({ query }) => admin.listDeadLetters(query).pipe(Effect.catchTag("InvalidCursor", badCursor), fromStoreFailures))
      .handle("replay", ({ params }) =>
        admin.replayDeadLetter(params.id).pipe(
          Effect.catchTags({
            DeadLetterNotFound: (e) => Effect.fail(new NotFound({ detail: e.message })),
            TaskNotFound: (e) => Effect.fail(new NotFound({ detail: e.message })),
            NotReplayable: (e) => Effect.fail(new Conflict({ detail: e.message })),
            TaskNotFailed: (e) => Effect.fail(new Conflict({ detail: e.message }))
          }),
          fromStoreFailures
        ))
      .handle("replayAll", ({ payload }) =>
        admin.replayAll({ type: payload.type }).pipe(
          Stream.runLast,
          Effect.map(Option.getOrElse(() => ({ total: 0, replayed: 0, skipped: 0 }))),
          fromStoreFailures
        ))
  }))

const queues = HttpApiBuilder.group(AdminApi, "queues", (handlers) =>
  Effect.gen(function*() {
    const admin = yield* Admin
    const pauses = yield* QueuePauses
    return handlers
      .handle("list", () =>
        admin.queues.pipe(
          Effect.map((qs) => qs.map((q) => ({ ...q, paused: q.paused === null ? null : { since: q.paused.since, reason: q.paused.reason ?? null } }))),
          fromStoreFailures
        ))
      .handle("pause", ({ params, payload }) =>
        pauses.pause(params.name, payload.reason).pipe(Effect.map((changed) => ({ queue: params.name, paused: true, changed })), fromStoreFailures))
      .handle("resume", ({ params }) =>
        pauses.resume(params.name).pipe(Effect.map((changed) => ({ queue: params.name, paused: false, changed })), fromStoreFailures))
  }))

const jobs = HttpApiBuilder.group(AdminApi, "jobs", (handlers) =>
  Effect.map(Admin, (admin) => handlers.handle("list", () => Effect.succeed(admin.jobs))))

/**
 * The admin API's routes (and `/openapi.json`) for a server listening on `host`
 * (the no-token rule looks at it), with the settings of AdminConfig.
 */
export const layer = (options: { readonly host: string }) =>
  Layer.unwrap(Effect.map(AdminConfig.config, (cfg) =>
    Layer.merge(
      HttpApiBuilder.layer(AdminApi, { openapiPath }).pipe(
        Layer.provide([tasks, deadLetters, queues, jobs]),
        Layer.provide([auth(options.host, cfg), requestProblems])
      ),
      bodyLimit(cfg.maxBodyBytes)
    )))
