/**
 * The admin HTTP API's definition (effect/http-api): the operator's operations
 * (Admin, QueuePauses, enqueue by name) as routes, with their request and response
 * schemas and their errors, from which the server is built and `/openapi.json`
 * generated. The wire format is JSON in camelCase, the domain's own field names
 * (`maxAttempts`, `runAt`, `nextCursor`); timestamps are ISO 8601 strings.
 *
 * Every error is an RFC 9457 problem (`application/problem+json`: `type`, `title`,
 * `status`, `detail`): 400 a request that does not decode (naming the field), 401
 * a missing or wrong token, 403 no token configured on a public address, 404 no
 * such task or letter, 409 an operation the task's state refuses, 413 a body over
 * ADMIN_MAX_BODY_BYTES, 415 a body that is not JSON, 500 a failure of the database
 * the caller cannot fix, 503 the database unavailable (repeat the call).
 * A value the database refuses (a NUL in a name or a payload) is a 400 too.
 */
import { Schema } from "effect"
import { HttpApi, HttpApiEndpoint, HttpApiError, HttpApiGroup, HttpApiMiddleware, HttpApiSecurity, OpenApi } from "effect/http-api"
import { DedupeKey, QueueName, Task, TaskEvent, TaskId, TaskType } from "../domain/Task.ts"
import { Priority } from "../domain/Priority.ts"
import { TaskStatus } from "../domain/TaskStatus.ts"
import { shownVersion } from "../version.ts"

// ---------------------------------------------------------------------------
// problems

const problemType = (name: string) => `urn:taskfiber:problem:${name}` as const

/** The request does not decode (body, query, path or headers); `field` names the offending one. */
export class BadRequest extends HttpApiError.Problem<BadRequest>()("BadRequest", {
  type: problemType("bad-request"),
  status: 400,
  title: "Bad request"
}, { detail: Schema.String, field: Schema.optionalKey(Schema.String) }) {}

/** A missing or wrong bearer token (the response carries `WWW-Authenticate: Bearer`). */
export class Unauthorized extends HttpApiError.Problem<Unauthorized>()("Unauthorized", {
  type: problemType("unauthorized"),
  status: 401,
  title: "Unauthorized"
}, { detail: Schema.String }) {}

/**
 * No ADMIN_TOKEN configured while the server listens beyond loopback; or, on
 * loopback without one, a change from a page of another origin or a request for
 * a host that is not a loopback name.
 */
export class Forbidden extends HttpApiError.Problem<Forbidden>()("Forbidden", {
  type: problemType("forbidden"),
  status: 403,
  title: "Forbidden"
}, { detail: Schema.String }) {}

/** No task, dead letter or job type of that name. */
export class NotFound extends HttpApiError.Problem<NotFound>()("NotFound", {
  type: problemType("not-found"),
  status: 404,
  title: "Not found"
}, { detail: Schema.String }) {}

/** The task's state refuses the operation (a retry of a task that is not failed). */
export class Conflict extends HttpApiError.Problem<Conflict>()("Conflict", {
  type: problemType("conflict"),
  status: 409,
  title: "Conflict"
}, { detail: Schema.String }) {}

/** A body larger than ADMIN_MAX_BODY_BYTES. */
export class PayloadTooLarge extends HttpApiError.Problem<PayloadTooLarge>()("PayloadTooLarge", {
  type: problemType("payload-too-large"),
  status: 413,
  title: "Payload too large"
}, { detail: Schema.String }) {}

/** The database failed in a way the caller cannot fix (the server's log has the cause). */
export class Internal extends HttpApiError.Problem<Internal>()("Internal", {
  type: problemType("internal"),
  status: 500,
  title: "Internal server error"
}, { detail: Schema.String }) {}

/** The database could not be reached; the call may be repeated. */
export class Unavailable extends HttpApiError.Problem<Unavailable>()("Unavailable", {
  type: problemType("unavailable"),
  status: 503,
  title: "Service unavailable"
}, { detail: Schema.String }) {}

// ---------------------------------------------------------------------------
// middleware

/**
 * The bearer token check of every route (AdminAuth.ts): state-changing routes
 * always, reads with ADMIN_READ_TOKEN_REQUIRED.
 */
export class AdminAuth extends HttpApiMiddleware.Service<AdminAuth>()("taskfiber/AdminAuth", {
  error: [Unauthorized, Forbidden],
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/** Renders a request that does not decode as a {@link BadRequest} naming the field. */
export class RequestProblems extends HttpApiMiddleware.Service<RequestProblems>()("taskfiber/RequestProblems", {
  error: BadRequest
}) {}

// ---------------------------------------------------------------------------
// schemas

/** A task with its history (status changes, oldest first). */
export const TaskDetail = Schema.Struct({ task: Task, events: Schema.Array(TaskEvent) })

/** A page of tasks in id order; `nextCursor` absent on the last page. */
export const TaskPage = Schema.Struct({ tasks: Schema.Array(Task), nextCursor: Schema.optionalKey(Schema.String) })

/** `POST /tasks`: a task of a registered type; `payload` is checked by the job's schema. */
export const EnqueueBody = Schema.Struct({
  type: TaskType,
  payload: Schema.optionalKey(Schema.Json),
  priority: Schema.optionalKey(Priority),
  runAt: Schema.optionalKey(Schema.Date),
  queue: Schema.optionalKey(QueueName),
  id: Schema.optionalKey(TaskId),
  dedupeKey: Schema.optionalKey(DedupeKey)
})

/** What `POST /tasks/:id/cancel` did: `cancelled` false when the task had ended already. */
export const CancelResult = Schema.Struct({
  id: Schema.String,
  cancelled: Schema.Boolean,
  status: TaskStatus,
  previousStatus: Schema.NullOr(TaskStatus)
})

/** A dead letter: a failed task, or input that never became one. */
export const DeadLetter = Schema.Struct({
  id: Schema.String,
  source: Schema.String,
  taskId: Schema.NullOr(Schema.String),
  queue: Schema.NullOr(Schema.String),
  type: Schema.NullOr(Schema.String),
  reason: Schema.String,
  error: Schema.Unknown,
  attempt: Schema.NullOr(Schema.Int),
  createdAt: Schema.Date,
  replayedAt: Schema.NullOr(Schema.Date),
  kafka: Schema.NullOr(Schema.Struct({ topic: Schema.String, partition: Schema.NullOr(Schema.Int), offset: Schema.NullOr(Schema.String) }))
})

/** A page of dead letters, newest first. */
export const DeadLetterPage = Schema.Struct({ letters: Schema.Array(DeadLetter), nextCursor: Schema.optionalKey(Schema.String) })

/** A dead letter replayed: the letter and its task, queued again. */
export const Replayed = Schema.Struct({ letter: DeadLetter, task: Task })

/** The totals of a bulk replay. */
export const ReplayTotals = Schema.Struct({ total: Schema.Int, replayed: Schema.Int, skipped: Schema.Int })

/** One queue's work in waiting and running, and its pause. */
export const QueueSummary = Schema.Struct({
  queue: Schema.String,
  depth: Schema.Array(Schema.Struct({
    status: Schema.Literals(["queued", "retrying", "running"]),
    band: Schema.Literals(["high", "normal", "low"]),
    tasks: Schema.Int,
    ready: Schema.Int
  })),
  waiting: Schema.Int,
  ready: Schema.Int,
  running: Schema.Int,
  oldestReadyMs: Schema.NullOr(Schema.Number),
  paused: Schema.NullOr(Schema.Struct({ since: Schema.Date, reason: Schema.NullOr(Schema.String) }))
})

/** What a pause or resume did: `changed` false when the queue was in that state already. */
export const PauseResult = Schema.Struct({ queue: Schema.String, paused: Schema.Boolean, changed: Schema.Boolean })

/** A registered job type, its payload as JSON Schema (draft 2020-12). */
export const JobInfo = Schema.Struct({
  name: Schema.String,
  queue: Schema.String,
  queues: Schema.Array(Schema.String),
  priority: Schema.Int,
  maxAttempts: Schema.NullOr(Schema.Int),
  timeoutMs: Schema.NullOr(Schema.Number),
  removeOnComplete: Schema.Boolean,
  payloadSchema: Schema.Unknown.annotate({ description: "JSON Schema (draft 2020-12) of the payload" })
})

/** What any route that reads or writes the database may answer: a value it refuses, its failure, its outage. */
const storeFailures = [BadRequest, Internal, Unavailable] as const

const Limit = Schema.FiniteFromString.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 500 }))
const IdParam = { id: Schema.String }

// ---------------------------------------------------------------------------
// groups

/** Tasks: enqueue, find, list, cancel, retry. */
export const TasksGroup = HttpApiGroup.make("tasks")
  .add(HttpApiEndpoint.post("enqueue", "/tasks", {
    payload: EnqueueBody,
    headers: { "idempotency-key": Schema.optionalKey(DedupeKey) },
    success: [Task.annotate({ httpApiStatus: 201, description: "created" }), Task.annotate({ description: "seen already: the existing task" })],
    error: storeFailures
  }))
  .add(HttpApiEndpoint.get("get", "/tasks/:id", { params: IdParam, success: TaskDetail, error: [...storeFailures, NotFound] }))
  .add(HttpApiEndpoint.get("list", "/tasks", {
    query: {
      status: Schema.optionalKey(TaskStatus),
      type: Schema.optionalKey(Schema.String),
      queue: Schema.optionalKey(Schema.String),
      limit: Schema.optionalKey(Limit),
      cursor: Schema.optionalKey(Schema.String),
      order: Schema.optionalKey(Schema.Literals(["asc", "desc"]))
    },
    success: TaskPage,
    error: storeFailures
  }))
  .add(HttpApiEndpoint.post("cancel", "/tasks/:id/cancel", { params: IdParam, success: CancelResult, error: [...storeFailures, NotFound] }))
  .add(HttpApiEndpoint.post("retry", "/tasks/:id/retry", { params: IdParam, success: Task, error: [...storeFailures, NotFound, Conflict] }))

/** Dead letters: list, replay one, replay all. */
export const DeadLettersGroup = HttpApiGroup.make("deadLetters")
  .add(HttpApiEndpoint.get("list", "/dead-letters", {
    query: {
      type: Schema.optionalKey(Schema.String),
      source: Schema.optionalKey(Schema.String),
      limit: Schema.optionalKey(Limit),
      cursor: Schema.optionalKey(Schema.String)
    },
    success: DeadLetterPage,
    error: storeFailures
  }))
  .add(HttpApiEndpoint.post("replayAll", "/dead-letters/replay", {
    payload: Schema.Struct({ type: Schema.optionalKey(TaskType) }),
    success: ReplayTotals,
    error: storeFailures
  }))
  .add(HttpApiEndpoint.post("replay", "/dead-letters/:id/replay", { params: IdParam, success: Replayed, error: [...storeFailures, NotFound, Conflict] }))

/** Queues: depth and pauses. */
export const QueuesGroup = HttpApiGroup.make("queues")
  .add(HttpApiEndpoint.get("list", "/queues", { success: Schema.Array(QueueSummary), error: storeFailures }))
  .add(HttpApiEndpoint.post("pause", "/queues/:name/pause", {
    params: { name: QueueName },
    payload: Schema.Struct({ reason: Schema.optionalKey(Schema.String.check(Schema.isMaxLength(1000))) }),
    success: PauseResult,
    error: storeFailures
  }))
  .add(HttpApiEndpoint.post("resume", "/queues/:name/resume", { params: { name: QueueName }, success: PauseResult, error: storeFailures }))

/** Jobs: the registered types. */
export const JobsGroup = HttpApiGroup.make("jobs")
  .add(HttpApiEndpoint.get("list", "/jobs", { success: Schema.Array(JobInfo) }))

/** The whole API; every route behind {@link AdminAuth}. */
export class AdminApi extends HttpApi.make("taskfiber-admin")
  .add(TasksGroup, DeadLettersGroup, QueuesGroup, JobsGroup)
  .middleware(RequestProblems)
  .middleware(AdminAuth)
  .annotate(OpenApi.Title, "taskfiber admin API")
  .annotate(OpenApi.Version, shownVersion)
{}

/** Where the OpenAPI document is served. */
export const openapiPath = "/openapi.json"

/** Every route as `METHOD path`, for docs and tests. */
export const routes: ReadonlyArray<string> = [
  "POST /tasks", "GET /tasks/:id", "GET /tasks", "POST /tasks/:id/cancel", "POST /tasks/:id/retry",
  "GET /dead-letters", "POST /dead-letters/replay", "POST /dead-letters/:id/replay",
  "GET /queues", "POST /queues/:name/pause", "POST /queues/:name/resume", "GET /jobs"
]

