/**
 * taskfiber embedded in an Effect application, as one Layer.
 *
 * A sign-up service with its own table and its own jobs: `welcome-email` and
 * `thumbnail`. It
 *  - signs a user up: enqueues the welcome email AND inserts the user in one
 *    transaction (`Transaction.transaction`), so there is a welcome email iff the
 *    user exists;
 *  - tries a duplicate sign-up: the user insert fails, the transaction rolls
 *    back, and the welcome email enqueued inside it before is gone too;
 *  - enqueues two thumbnails at once with `Tasks.enqueueMany`;
 *  - waits for its tasks through the supervisor's `outcomes` queue (no polling),
 *    prints the results and exits (closing the layer = graceful shutdown).
 *
 *   scripts/node.sh npm run example examples/embedded.ts   # embedded PostgreSQL, or DATABASE_URL
 */
import { randomUUID } from "node:crypto"
import { Console, Effect, Layer, Option, Queue, Schema } from "effect"
import type { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { NodeRuntime } from "@effect/platform-node"
import { Database, Job, RetryPolicy, Supervisor, Taskfiber, Tasks, TaskStore, Transaction } from "taskfiber"
import type { Outcome } from "taskfiber"

/** The app's queue: a `taskfiber start` with another catalogue on the same database leaves it alone. */
const queue = "signup-app"

/** Sends the welcome email of a new user (here: logs it). */
const WelcomeEmail = Job.define({
  name: "welcome-email",
  queue,
  payload: Schema.Struct({ email: Schema.String }),
  retry: RetryPolicy.exponential({ baseMs: 200, maxDelayMs: 2000, maxAttempts: 5 }),
  run: (payload, ctx) =>
    Effect.gen(function*() {
      yield* Effect.logInfo("welcome email sent", { taskId: ctx.taskId, to: payload.email })
      return { sentTo: payload.email }
    })
})

/** Makes a thumbnail of an uploaded image (here: computes its name). */
const Thumbnail = Job.define({
  name: "thumbnail",
  queue,
  payload: Schema.Struct({ image: Schema.String, width: Schema.Int.check(Schema.isBetween({ minimum: 16, maximum: 1024 })) }),
  run: (payload, ctx) =>
    Effect.gen(function*() {
      yield* ctx.progress({ step: "resizing" })
      const dot = payload.image.lastIndexOf(".")
      const name = dot < 0 ? `${payload.image}-${payload.width}` : `${payload.image.slice(0, dot)}-${payload.width}${payload.image.slice(dot)}`
      return { thumbnail: name, width: payload.width }
    })
})

/** The app's jobs. */
const appJobs = [WelcomeEmail, Thumbnail]

/**
 * taskfiber over the database layer the app gives it (its own pool, already
 * migrated, e.g. `Database.layer` or `Database.layerUrl(url)`).
 */
export const layer = <E, R>(database: Layer.Layer<PgClient.PgClient | SqlClient, E, R>) =>
  Taskfiber.layerWithoutDatabase({ jobs: appJobs, config: { maxConcurrentJobs: 4 } }).pipe(
    Layer.provideMerge(database)
  )

/** What the program did, for the test and the printout. */
interface Report {
  readonly results: ReadonlyArray<{
    readonly taskId: string
    readonly type: string
    readonly outcome: Outcome
    readonly attempt: number
    readonly result: unknown
  }>
  /** The welcome email enqueued in the rolled-back sign-up transaction does not exist. */
  readonly rolledBackTaskExists: boolean
  readonly users: number
}

const terminal: ReadonlyArray<Outcome> = ["succeeded", "failed", "cancelled"]

export const program = Effect.gen(function*() {
  const sql = yield* SqlClient
  const store = yield* TaskStore.TaskStore
  const supervisor = yield* Supervisor.Supervisor
  // Taken before enqueueing: every outcome from now on is in this queue.
  const outcomes = yield* supervisor.outcomes

  yield* sql`create table if not exists signup_app_users (
    id serial primary key,
    email text not null unique,
    welcome_task uuid not null,
    created_at timestamptz not null default now()
  )`

  // One sign-up = its welcome email + the user row (which records the task), in
  // one transaction: both are committed, or neither.
  const signUp = (email: string, taskId: string = randomUUID()) =>
    Transaction.transaction(Effect.gen(function*() {
      const task = yield* Tasks.enqueue(WelcomeEmail, { email }, { id: taskId })
      yield* sql`insert into signup_app_users (email, welcome_task) values (${email}, ${task.id}::uuid)`
      return task
    }))

  const email = `ada+${randomUUID().slice(0, 8)}@example.com`
  const welcome = yield* signUp(email)

  // The same address again: the unique constraint fails the insert, the
  // transaction rolls back, and the welcome email enqueued in it is gone too.
  const rolledBackId = randomUUID()
  const duplicate = yield* signUp(email, rolledBackId).pipe(
    Effect.as("accepted"),
    Effect.catchTag("DatabaseError", (error) => Effect.succeed(`rejected: ${error.message}`))
  )
  yield* Console.log(`duplicate sign-up of ${email}: ${duplicate}`)
  const rolledBackTaskExists = Option.isSome(yield* store.get(rolledBackId))

  // Many tasks of one job: one statement.
  const thumbs = yield* Tasks.enqueueMany(Thumbnail, [{ image: "cat.png", width: 128 }, { image: "dog.jpg", width: 128 }])

  // Wait for the three tasks without polling: the supervisor reports each outcome.
  const ids = new Set([welcome.id, ...thumbs.map((t) => t.id)])
  const settled = new Map<string, Outcome>()
  while ([...ids].some((id) => !settled.has(id))) {
    const { outcome, taskId } = yield* Queue.take(outcomes)
    if (ids.has(taskId) && terminal.includes(outcome)) settled.set(taskId, outcome)
  }

  const results = yield* Effect.forEach([...ids], (id) =>
    Effect.map(store.get(id), (found) => {
      const { task } = Option.getOrThrow(found)
      return { taskId: id, type: task.type, outcome: settled.get(id)!, attempt: task.attempt, result: task.result }
    }))
  for (const r of results) yield* Console.log(`${r.type} ${r.taskId}: ${r.outcome} -> ${JSON.stringify(r.result)}`)
  yield* Console.log(`task enqueued in the rolled-back transaction exists: ${rolledBackTaskExists}`)

  const [count] = yield* sql<{ n: number }>`select count(*)::int as n from signup_app_users where email = ${email}`
  return { results, rolledBackTaskExists, users: count!.n } satisfies Report
})

/** The app on the configured database (embedded when DATABASE_URL is unset). */
const AppLive = layer(Database.layer)

if (import.meta.main) {
  program.pipe(Effect.provide(AppLive), NodeRuntime.runMain)
}
