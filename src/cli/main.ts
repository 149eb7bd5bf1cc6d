/**
 * The `taskfiber` service binary.
 *
 *   taskfiber start [--jobs <module>]        run the job runtime until SIGINT/SIGTERM
 *   taskfiber enqueue <type> <json> [...]    enqueue a task; prints its id
 *   taskfiber status <id> [--json]           a task and its history
 *   taskfiber migrate                        bring the schema up to date and exit
 *   taskfiber health [--json]                one health sample of the database; exit 0–3 by status
 *   taskfiber pause <queue> [--reason R]     stop claiming the queue's tasks (they wait) until resumed
 *   taskfiber resume <queue>                 claim the queue's tasks again, waking the workers at once
 *
 * The operator's commands (src/admin/Admin.ts), each a read or one change on the
 * database, no running service needed; a change that is not possible (a task
 * already final, not failed, not found) is one line on stderr and exit 1:
 *
 *   taskfiber list [--status S] [--type T] [--queue Q] [--limit N] [--cursor C] [--json]
 *                                            a page of tasks; `more:` names the next page's command
 *   taskfiber cancel <id> [--reason R]       cancel a queued, retrying or running task
 *   taskfiber retry <id>                     a failed task back to its queue
 *   taskfiber dlq list [--type T] [--source S] [--limit N] [--cursor C] [--json]
 *                                            dead letters, newest first
 *   taskfiber dlq replay <id>                replay the failed task behind a dead letter
 *   taskfiber dlq replay --all [--type T]    replay every failed task; progress on stderr, summary on stdout
 *   taskfiber queues [--json]                each queue's depth by status and priority band
 *
 * The database is `DATABASE_URL`, or the embedded PostgreSQL in `EMBEDDED_PG_DIR`
 * (shared: `enqueue`, `status`, `pause` and `resume` in another terminal connect to
 * the server a running `start` owns). Logs go to stderr (`LOG_LEVEL`, `LOG_FORMAT`:
 * see observability/Logging.ts), so stdout carries only what a command prints:
 * `enqueue`'s stdout is the task id. `start` exports traces and metrics over OTLP
 * when `OTEL_ENABLED` (observability/Telemetry.ts).
 *
 * Shutdown: the first SIGINT/SIGTERM stops claiming, lets running jobs finish for
 * `SHUTDOWN_GRACE`, releases the rest to the queue and exits 0; a second signal
 * exits at once (130). A one-shot command (enqueue, status, migrate, pause, resume)
 * stopped by a signal before it finished exits 128 + the signal's number (143, 130).
 */
import { constants } from "node:os"
import { Cause, Config, ConfigProvider, Console, Data, Duration, Effect, Exit, Layer, Option, Redacted, References, Runtime, Stream } from "effect"
import { Argument, CliOutput, Command, Flag, GlobalFlag } from "effect/cli"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as DurationText from "../domain/DurationText.ts"
import { redactSecrets } from "../domain/Redact.ts"
import * as JobRegistry from "../runtime/JobRegistry.ts"
import * as RuntimeConfig from "../runtime/RuntimeConfig.ts"
import * as Tasks from "../runtime/Tasks.ts"
import * as Database from "../store/Database.ts"
import * as TaskStore from "../store/TaskStore.ts"
import * as PgTaskStore from "../store/PgTaskStore.ts"
import * as Workers from "../store/Workers.ts"
import * as QueuePauses from "../store/QueuePauses.ts"
import { fromUnknown } from "../store/DatabaseError.ts"
import { SqlClient } from "effect/sql/SqlClient"
import * as HealthPolicy from "../domain/HealthPolicy.ts"
import * as Health from "../observability/Health.ts"
import * as Sampler from "../observability/Sampler.ts"
import * as HealthReport from "./healthReport.ts"
import * as Taskfiber from "../Taskfiber.ts"
import * as KafkaConfig from "../ingress/kafka/KafkaConfig.ts"
import * as Logging from "../observability/Logging.ts"
import * as Telemetry from "../observability/Telemetry.ts"
import * as HttpServer from "../http/HttpServer.ts"
import * as AdminConfig from "../http/AdminConfig.ts"
import * as JobsModule from "./jobsModule.ts"
import * as Render from "./render.ts"
import * as Admin from "../admin/Admin.ts"
import * as TaskStatus from "../domain/TaskStatus.ts"
import * as DeadLetters from "../store/DeadLetters.ts"
import { shownVersion } from "../version.ts"
import * as AdminRender from "./adminRender.ts"

// One-shot commands: no idle connections kept, none warmed.
const OneShotDatabase = Database.layerWith({ poolMin: 0 })
const Store = Layer.mergeAll(PgTaskStore.layer, Workers.layer).pipe(Layer.provideMerge(OneShotDatabase))

/**
 * A failure already told to the user on stderr: exit code 1, and `runMain` does
 * not log it a second time.
 */
class Reported extends Data.TaggedError("Reported")<{ readonly message: string }> {
  override readonly [Runtime.errorReported] = false
  override readonly [Runtime.errorExitCode] = 1
}

/** Prints the error's message on stderr and fails with {@link Reported}. */
const report = (prefix: string) => (error: { readonly message: string }) =>
  Console.error(`taskfiber: ${prefix}${redactSecrets(error.message)}`).pipe(
    Effect.andThen(Effect.fail(new Reported({ message: error.message })))
  )

/**
 * Every setting the binary reads, checked before anything starts (`--help`
 * included): a wrong value is one line on stderr naming the variable, and exit 1,
 * never a setting silently ignored.
 */
const settings = (() => {
  const exit = Effect.runSyncExit(Config.all({
    logging: Logging.config,
    logLevel: Logging.levelSetting,
    telemetry: Telemetry.config,
    http: HttpServer.config,
    admin: AdminConfig.config,
    runtime: RuntimeConfig.config,
    database: Database.config,
    kafka: KafkaConfig.config
  }).parse(ConfigProvider.fromEnv()))
  if (Exit.isSuccess(exit)) return exit.value
  const error = Cause.squash(exit.cause)
  const text = error instanceof Config.ConfigError && error.cause instanceof Error ? error.cause.message : String(error)
  // "Expected …\n  at ["NAME"]" → "NAME: expected …"
  const at = /\n\s*at \["([^"]+)"\]/.exec(text)
  const what = text.replace(/\n\s*at \[.*$/s, "")
  const value = at ? process.env[at[1]!] : undefined
  const named = at ? `${at[1]}${value === undefined ? "" : `=${JSON.stringify(redactSecrets(value))}`}` : ""
  process.stderr.write(`taskfiber: invalid setting ${at ? `${named}: ${what.charAt(0).toLowerCase()}${what.slice(1)}` : what}\n`)
  process.exit(1)
})()


/**
 * `enqueue`, `status`, `pause`, `resume` and the operator's commands are quiet
 * (warnings and errors only) unless `LOG_LEVEL` or `--log-level` says otherwise.
 */
const quiet = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const flag = yield* GlobalFlag.LogLevel
    if (Option.isSome(flag) || Option.isSome(settings.logLevel)) return yield* effect
    return yield* Effect.provideService(effect, References.MinimumLogLevel, "Warn")
  })

/**
 * Every command's logs (LOG_FORMAT, LOG_LEVEL, LOG_COLORS) on stderr, or over
 * OTLP with LOG_FORMAT=otel; traces and metrics are `start`'s alone: a one-shot
 * command would only wait at exit for its flush.
 */
const LoggingLive = Telemetry.layerWith({ ...settings.telemetry, enabled: false }, settings.logging)

/**
 * `start`'s logging and OTLP export (OTEL_ENABLED), at the level in force
 * (`--log-level` wins over LOG_LEVEL).
 */
const TelemetryLive = Layer.unwrap(Effect.map(
  Effect.service(References.MinimumLogLevel),
  (level) => Telemetry.layerWith(settings.telemetry, { ...settings.logging, level })
))

// ---------------------------------------------------------------------------
// flags

const jobsFlag = Flag.String("jobs").pipe(
  Flag.withDescription("Module exporting the job list (`jobs` or default), resolved from the current directory; default: the demo jobs"),
  Flag.optional
)

/** Where the data lives, for the start banner. */
const describeDatabase = Effect.map(Database.config, (cfg) =>
  Option.match(cfg.url, {
    onSome: (url) => `PostgreSQL at ${redactSecrets(Redacted.value(url))}`,
    onNone: () => `embedded PostgreSQL, data in ${Database.embeddedDataDir(cfg.embeddedDir)} (port ${cfg.embeddedPort}; set DATABASE_URL to use your own server)`
  }))

// ---------------------------------------------------------------------------
// start

/**
 * How to run this binary from another terminal, as the banner prints it: in a
 * clone of the repository (running the .ts sources) `taskfiber` is on no PATH and
 * the machine's node may be too old, so the npm script through scripts/node.sh;
 * installed as a package, `npx taskfiber`.
 */
const command = import.meta.url.endsWith(".ts") ? "scripts/node.sh npm run -s taskfiber --" : "npx taskfiber"

const start = Command.make("start", { jobs: jobsFlag }, ({ jobs: jobsPath }) =>
  handler("start")(Effect.gen(function*() {
    const jobs = yield* JobsModule.load(Option.getOrUndefined(jobsPath)).pipe(Effect.catch(report("")))
    yield* Console.log(`taskfiber: starting on ${yield* describeDatabase}`)
    yield* Effect.gen(function*() {
      const registry = yield* JobRegistry.JobRegistry
      const jobsArg = Option.match(jobsPath, { onNone: () => "", onSome: (p) => ` --jobs ${p}` })
      const example = registry.get("echo") !== undefined
        ? `echo '{"hello":"world"}'`
        : `${registry.jobs[0]?.name ?? "<type>"} '<payload as JSON>'`
      yield* Console.log(
        [
          `taskfiber: running jobs ${registry.jobs.map((j) => j.name).join(", ")} (queues ${registry.queues.join(", ")})`,
          `taskfiber: enqueue from another terminal, for example:`,
          `  ${command} enqueue${jobsArg} ${example}`,
          `  ${command} status <id>`,
          `taskfiber: Ctrl-C (SIGINT) or SIGTERM shuts down gracefully; a second signal exits at once`
        ].join("\n")
      )
      return yield* Effect.never
    }).pipe(
      // The binary's own logging and export (TelemetryLive, `--log-level` included), not the layer's.
      Effect.provide(Taskfiber.layer({ jobs, http: true, telemetry: false })),
      // The layer's failures (QUEUE_CONCURRENCY against the loaded jobs' queues, an
      // embedded server that cannot start, a database that cannot be reached) are
      // one line each: the messages say what to change, a stack trace would not.
      Effect.catch(report("")),
      Effect.provide(TelemetryLive)
    )
  }))).pipe(
  Command.withDescription("Run the job runtime (supervisor and job fibers) until SIGINT/SIGTERM")
)

// ---------------------------------------------------------------------------
// enqueue

/** The longest `--delay`: 10 years, far inside PostgreSQL's timestamps. */
const maxDelayMs = 10 * 365 * 24 * 3600 * 1000

/** `--delay` ({@link DurationText}): the milliseconds, or why not. */
const parseDelay = (text: string): number | string => {
  const d = DurationText.parse(text)
  if (d === undefined) return `--delay: "${text}" is not ${DurationText.expected}`
  const ms = Duration.toMillis(d)
  if (ms < 0) return `--delay: "${text}" is negative`
  if (ms > maxDelayMs) return `--delay: "${text}" is too large (at most 10 years)`
  return Math.round(ms)
}

/** `--priority`: an integer in [-1000, 1000], or why not. */
const parsePriority = (text: string): number | string => {
  const n = Number(text.trim())
  if (text.trim() === "" || !Number.isInteger(n) || n < -1000 || n > 1000) return `--priority: "${text}" is not an integer in [-1000, 1000]`
  return n
}

/** The payload argument as JSON. */
const parsePayload = (text: string): { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string } => {
  try {
    return { ok: true, value: JSON.parse(text) }
  } catch (e) {
    return { ok: false, message: `the payload is not valid JSON (${e instanceof Error ? e.message : String(e)}): ${text}` }
  }
}

class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

const enqueue = Command.make("enqueue", {
  type: Argument.String("type").pipe(Argument.withDescription("Job name, e.g. echo")),
  json: Argument.String("json").pipe(Argument.withDescription("The payload as JSON, e.g. '{\"hello\":\"world\"}'")),
  priority: Flag.String("priority").pipe(Flag.withDescription("Priority, an integer in [-1000, 1000], higher first (default: the job's)"), Flag.optional),
  delay: Flag.String("delay").pipe(Flag.withDescription("Run after this long: milliseconds, or a duration such as \"5 seconds\""), Flag.optional),
  queue: Flag.String("queue").pipe(Flag.withDescription("Queue (default: the job's)"), Flag.optional),
  dedupeKey: Flag.String("dedupe-key").pipe(Flag.withDescription("Idempotency key: a second enqueue with it finds the first task"), Flag.optional),
  jobs: jobsFlag
}, (args) =>
  handler("enqueue")(quiet(Effect.gen(function*() {
    const payload = parsePayload(args.json)
    if (!payload.ok) return yield* new UsageError({ message: payload.message })
    let delayMs: number | undefined
    if (Option.isSome(args.delay)) {
      const delay = parseDelay(args.delay.value)
      if (typeof delay === "string") return yield* new UsageError({ message: delay })
      delayMs = delay
    }
    let priority: number | undefined
    if (Option.isSome(args.priority)) {
      const parsed = parsePriority(args.priority.value)
      if (typeof parsed === "string") return yield* new UsageError({ message: parsed })
      priority = parsed
    }
    const jobs = yield* JobsModule.load(Option.getOrUndefined(args.jobs))
    const registry = JobRegistry.make(jobs)
    if (registry.get(args.type) === undefined) {
      return yield* new UsageError({
        message: `unknown task type "${args.type}"; known types: ${registry.jobs.map((j) => j.name).join(", ")}` +
          (Option.isNone(args.jobs) ? " (another catalogue: --jobs <module>)" : "")
      })
    }
    const result = yield* Tasks.enqueueByName(registry, args.type, payload.value, {
      ...(priority === undefined ? {} : { priority }),
      ...(delayMs === undefined ? {} : { delayMs }),
      ...(Option.isSome(args.queue) ? { queue: args.queue.value } : {}),
      ...(Option.isSome(args.dedupeKey) ? { dedupeKey: args.dedupeKey.value } : {})
    }).pipe(Effect.provide(Store))
    if (!result.created) yield* Console.error(`taskfiber: a task with this dedupe key exists already: ${result.id}`)
    yield* Console.log(result.id)
  })).pipe(Effect.catch(report(""))))).pipe(
  Command.withDescription("Enqueue a task by job name with a JSON payload; prints the task id")
)

// ---------------------------------------------------------------------------
// status

const status = Command.make("status", {
  id: Argument.String("id").pipe(Argument.withDescription("Task id (printed by enqueue)")),
  json: Flag.Boolean("json").pipe(Flag.withDescription("Print the task as one JSON object"), Flag.withDefault(false))
}, ({ id, json }) =>
  handler("status")(quiet(Effect.gen(function*() {
    const store = yield* TaskStore.TaskStore
    const found = yield* store.get(id.trim())
    if (Option.isNone(found)) return yield* new UsageError({ message: `no task with id ${id} on ${yield* describeDatabase}` })
    const { task } = found.value
    // A waiting task says whether any live worker will run it.
    const serving = task.status === "queued" || task.status === "retrying"
      ? Render.servingOf(task, yield* Effect.flatMap(Workers.Workers, (w) => w.live(Workers.liveWithinMs)))
      : undefined
    yield* Console.log(json ? JSON.stringify(Render.toJson(found.value, serving)) : Render.toText(found.value, serving))
  }).pipe(Effect.provide(Store))).pipe(Effect.catch(report(""))))).pipe(
  Command.withDescription("Show a task: status, attempts, result or error, progress, checkpoint, history")
)

// ---------------------------------------------------------------------------
// migrate

const migrate = Command.make("migrate", {}, () =>
  handler("migrate")(Console.log("taskfiber: schema up to date").pipe(Effect.provide(OneShotDatabase), Effect.catch(report(""))))).pipe(
  Command.withDescription("Apply pending migrations from schema/ and exit")
)

// ---------------------------------------------------------------------------
// health

/** A report that is not healthy, already printed: its severity is the exit code (1 DEGRADED … 3 CRITICAL). */
class NotHealthy extends Data.TaggedError("NotHealthy")<{ readonly status: HealthPolicy.HealthStatus }> {
  override readonly [Runtime.errorReported] = false
  override readonly [Runtime.errorExitCode]: number
  constructor(props: { readonly status: HealthPolicy.HealthStatus }) {
    super(props)
    this[Runtime.errorExitCode] = HealthPolicy.severity(props.status)
  }
}

/** Checks the command cannot measure: the pool's (its own means nothing) and the consumer's. */
const measuredByTheService = new Set<HealthPolicy.Check>(["pool_usage", "pool_probe", "query_time", "kafka_connection", "kafka_lag"])

/** One sample of the database, judged; a database that cannot be read is a critical report with its reason. */
const healthReport = (thresholds: HealthPolicy.Thresholds): Effect.Effect<Health.Report> =>
  Effect.gen(function*() {
    const { sampled } = yield* Sampler.read(yield* SqlClient)
    const assessed = HealthPolicy.assess(sampled.sample, thresholds)
    return {
      ...assessed,
      unmeasured: assessed.unmeasured.map((u) => (measuredByTheService.has(u.check) ? { ...u, reason: HealthReport.notHere } : u)),
      sampledAt: sampled.sampledAt
    }
  }).pipe(
    Effect.provide(OneShotDatabase),
    Effect.catch((error: { readonly message: string }) =>
      Effect.succeed({ ...HealthPolicy.unreachable(fromUnknown(error)?.message ?? redactSecrets(error.message)), sampledAt: null }))
  )

const health = Command.make("health", {
  json: Flag.Boolean("json").pipe(Flag.withDescription("Print the report as one JSON object"), Flag.withDefault(false))
}, ({ json }) =>
  handler("health")(quiet(Effect.gen(function*() {
    const report = yield* healthReport(yield* Health.thresholdsConfig)
    yield* Console.log(json ? JSON.stringify(HealthReport.toJson(report)) : HealthReport.toText(report))
    if (report.status !== "HEALTHY") return yield* new NotHealthy({ status: report.status })
  }).pipe(Effect.catchTags({ InvalidSetting: report(""), ConfigError: report("") }))))).pipe(
  Command.withDescription("Sample the database once and print its health; exit 0 HEALTHY, 1 DEGRADED, 2 UNHEALTHY, 3 CRITICAL")
)

// ---------------------------------------------------------------------------
// the operator's commands: list, cancel, retry, dlq, queues (src/admin/Admin.ts)

/**
 * The operator's operations on the database alone, like `status`: no running
 * service needed. No job catalogue is loaded, so `queues` shows the queues that
 * have work (the service's Admin also lists its jobs' empty queues).
 */
const AdminLive = Admin.layer.pipe(
  Layer.provide(Layer.mergeAll(DeadLetters.layer, QueuePauses.layer, JobRegistry.layer([])).pipe(Layer.provideMerge(Store)))
)

/** Command `name`'s handler over the Admin service: quiet, and a failure is one line on stderr and exit 1. */
const adminHandler = (name: string) => <A, E extends { readonly message: string }>(effect: Effect.Effect<A, E, Admin.Admin>) =>
  handler(name)(quiet(effect.pipe(Effect.provide(AdminLive))).pipe(Effect.catch(report(""))))

/** `--limit`: 1–500, as the pages allow. */
const limitFlag = Flag.Int("limit").pipe(Flag.withDescription("Rows per page, 1–500 (default 50)"), Flag.optional)
const cursorFlag = Flag.String("cursor").pipe(Flag.withDescription("Where the previous page ended (its `more:` line, or next_cursor)"), Flag.optional)
const jsonFlag = (what: string) => Flag.Boolean("json").pipe(Flag.withDescription(`Print ${what} as one JSON object`), Flag.withDefault(false))

const checkLimit = (limit: Option.Option<number>) =>
  Option.isSome(limit) && (limit.value < 1 || limit.value > 500)
    ? Effect.fail(new UsageError({ message: `--limit: ${limit.value} is not between 1 and 500` }))
    : Effect.succeed(Option.getOrUndefined(limit))

/** The command line of the next page: these flags, and the cursor. */
const nextPage = (words: ReadonlyArray<string>, flags: Record<string, Option.Option<string | number>>) => (cursor: string) =>
  [
    "taskfiber",
    ...words,
    ...Object.entries(flags).flatMap(([k, v]) => (Option.isSome(v) ? [`--${k}`, String(v.value)] : [])),
    "--cursor",
    cursor
  ].join(" ")

const list = Command.make("list", {
  status: Flag.Literals("status", TaskStatus.TaskStatuses).pipe(Flag.withDescription("Only tasks in this status"), Flag.optional),
  type: Flag.String("type").pipe(Flag.withDescription("Only tasks of this type (job name)"), Flag.optional),
  queue: Flag.String("queue").pipe(Flag.withDescription("Only tasks in this queue"), Flag.optional),
  limit: limitFlag,
  cursor: cursorFlag,
  json: jsonFlag("the page")
}, (args) =>
  adminHandler("list")(Effect.gen(function*() {
    const limit = yield* checkLimit(args.limit)
    const page = yield* Admin.Admin.use((admin) =>
      admin.listTasks({
        ...(Option.isSome(args.status) ? { status: args.status.value } : {}),
        ...(Option.isSome(args.type) ? { type: args.type.value } : {}),
        ...(Option.isSome(args.queue) ? { queue: args.queue.value } : {}),
        ...(limit === undefined ? {} : { limit }),
        ...(Option.isSome(args.cursor) ? { cursor: args.cursor.value } : {})
      })
    )
    const next = nextPage(["list"], { status: args.status, type: args.type, queue: args.queue, limit: args.limit })
    yield* Console.log(args.json ? JSON.stringify(AdminRender.taskPageJson(page)) : AdminRender.taskPageText(page, next))
  }))).pipe(
  Command.withDescription("List tasks in id order (oldest first), filtered, a page at a time")
)

const cancel = Command.make("cancel", {
  id: Argument.String("id").pipe(Argument.withDescription("Task id")),
  reason: Flag.String("reason").pipe(Flag.withDescription("Why, recorded as the task's last error (default: cancelled by an operator)"), Flag.optional)
}, ({ id, reason }) =>
  adminHandler("cancel")(Effect.gen(function*() {
    const admin = yield* Admin.Admin
    const result = yield* admin.cancelTask(id.trim(), ...(Option.isSome(reason) ? [reason.value] : []))
    if (result._tag === "AlreadyFinal") {
      return yield* new UsageError({ message: `task ${result.id} is ${result.status} already: nothing to cancel` })
    }
    yield* Console.log(`cancelled ${result.id} (was ${result.previousStatus})`)
  }))).pipe(
  Command.withDescription("Cancel a queued, retrying or running task (a running one is interrupted at its worker)")
)

const retry = Command.make("retry", {
  id: Argument.String("id").pipe(Argument.withDescription("Id of a failed task"))
}, ({ id }) =>
  adminHandler("retry")(Effect.gen(function*() {
    const task = yield* Admin.Admin.use((admin) => admin.retryTask(id.trim()))
    yield* Console.log(`queued ${task.id} again (attempts from 0 of ${task.maxAttempts})`)
  }))).pipe(
  Command.withDescription("Put a failed task back in its queue, its attempts from zero and its checkpoint kept")
)

const dlqList = Command.make("list", {
  type: Flag.String("type").pipe(Flag.withDescription("Only dead letters of this task type"), Flag.optional),
  source: Flag.String("source").pipe(Flag.withDescription("Only from this source: task (failed tasks), kafka (undecodable messages)"), Flag.optional),
  limit: limitFlag,
  cursor: cursorFlag,
  json: jsonFlag("the page")
}, (args) =>
  adminHandler("dlq list")(Effect.gen(function*() {
    const limit = yield* checkLimit(args.limit)
    const page = yield* Admin.Admin.use((admin) =>
      admin.listDeadLetters({
        type: Option.getOrUndefined(args.type),
        source: Option.getOrUndefined(args.source),
        limit,
        cursor: Option.getOrUndefined(args.cursor)
      })
    )
    const next = nextPage(["dlq", "list"], { type: args.type, source: args.source, limit: args.limit })
    yield* Console.log(args.json ? JSON.stringify(AdminRender.deadLetterPageJson(page)) : AdminRender.deadLetterPageText(page, next))
  }))).pipe(
  Command.withDescription("List dead letters, newest first: failed tasks and input that never became a task")
)

/** Draws a replay's progress on stderr: a bar redrawn in place on a terminal, a line each batch otherwise. */
const drawProgress = (tty: boolean) => (p: Admin.ReplayProgress) =>
  Effect.sync(() => {
    process.stderr.write(tty ? `\r${AdminRender.progressBar(p)}` : `${AdminRender.progressLine(p)}\n`)
  })

const dlqReplay = Command.make("replay", {
  id: Argument.String("id").pipe(Argument.withDescription("Dead letter id (dlq list), or none with --all"), Argument.optional),
  all: Flag.Boolean("all").pipe(Flag.withDescription("Replay every failed task (of --type)"), Flag.withDefault(false)),
  type: Flag.String("type").pipe(Flag.withDescription("With --all: only failed tasks of this type"), Flag.optional)
}, ({ all, id, type }) =>
  adminHandler("dlq replay")(Effect.gen(function*() {
    const admin = yield* Admin.Admin
    if (Option.isSome(id) && all) return yield* new UsageError({ message: "give a dead letter id or --all, not both" })
    if (Option.isSome(id)) {
      if (Option.isSome(type)) return yield* new UsageError({ message: "--type goes with --all" })
      const { letter, task } = yield* admin.replayDeadLetter(id.value.trim())
      yield* Console.log(`replayed dead letter ${letter.id}: task ${task.id} (${task.type}) queued again`)
      return
    }
    if (!all) return yield* new UsageError({ message: "give a dead letter id, or --all to replay every failed task" })
    const tty = process.stderr.isTTY === true
    const last = yield* admin.replayAll({ type: Option.getOrUndefined(type) }).pipe(
      Stream.tap(drawProgress(tty)),
      Stream.runLast,
      Effect.ensuring(Effect.sync(() => tty && process.stderr.write("\n")))
    )
    const summary = Option.getOrElse(last, () => ({ total: 0, replayed: 0, skipped: 0 }))
    yield* Console.log(AdminRender.replaySummary(summary, Option.getOrUndefined(type)))
  }))).pipe(
  Command.withDescription("Replay the failed task behind a dead letter, or every failed task with --all [--type]")
)

const dlq = Command.make("dlq").pipe(
  Command.withDescription("Dead letters: failed tasks, and input that never became a task"),
  Command.withSubcommands([dlqList, dlqReplay])
)

const queues = Command.make("queues", { json: jsonFlag("the queues") }, ({ json }) =>
  adminHandler("queues")(Effect.gen(function*() {
    const summaries = yield* Admin.Admin.use((admin) => admin.queues)
    yield* Console.log(json ? JSON.stringify(AdminRender.queuesJson(summaries)) : AdminRender.queuesText(summaries))
  }))).pipe(
  Command.withDescription("Each queue's waiting tasks by status and priority band, running tasks, and the oldest ready one's wait")
)

// ---------------------------------------------------------------------------
// pause, resume: on the database directly, like status (no running service
// needed); every instance serving the queue follows.

const Pauses = QueuePauses.layer.pipe(Layer.provideMerge(OneShotDatabase))

const queueArgument = Argument.String("queue").pipe(Argument.withDescription("Queue name, e.g. default"))

/** The queue argument, within the length a queue name has (1 to 128 characters). */
const checkedQueue = (queue: string) =>
  queue.length >= 1 && queue.length <= 128
    ? Effect.succeed(queue)
    : Effect.fail(new UsageError({ message: `a queue name is 1 to 128 characters: "${queue}"` }))

const pause = Command.make("pause", {
  queue: queueArgument,
  reason: Flag.String("reason").pipe(Flag.withDescription("Why, kept with the pause (at most 1,000 characters)"), Flag.optional)
}, ({ queue, reason }) =>
  handler("pause")(quiet(Effect.gen(function*() {
    const name = yield* checkedQueue(queue)
    const changed = yield* QueuePauses.QueuePauses.use((p) => p.pause(name, Option.getOrUndefined(reason)))
    yield* Console.log(changed ? `queue ${name} paused` : `queue ${name} was already paused`)
  }).pipe(Effect.provide(Pauses))).pipe(Effect.catch(report(""))))).pipe(
  Command.withDescription("Pause a queue: its tasks are not claimed (they wait; enqueues still succeed; running ones finish) until resumed")
)

const resume = Command.make("resume", { queue: queueArgument }, ({ queue }) =>
  handler("resume")(quiet(Effect.gen(function*() {
    const name = yield* checkedQueue(queue)
    const changed = yield* QueuePauses.QueuePauses.use((p) => p.resume(name))
    yield* Console.log(changed ? `queue ${name} resumed` : `queue ${name} was not paused`)
  }).pipe(Effect.provide(Pauses))).pipe(Effect.catch(report(""))))).pipe(
  Command.withDescription("Resume a paused queue: its due tasks are claimed at once")
)

const cli = Command.make("taskfiber").pipe(
  Command.withDescription("A durable, observable task runtime on PostgreSQL"),
  Command.withSubcommands([start, enqueue, status, migrate, health, list, cancel, retry, dlq, queues, pause, resume])
)

// ---------------------------------------------------------------------------
// signals: the first one interrupts the program (runMain), whose finalizers are
// the graceful shutdown; a second one exits at once.

/** The first SIGINT/SIGTERM and when it came (performance.now()). */
let firstSignal: { readonly signal: NodeJS.Signals; readonly at: number } | undefined

/**
 * A repeat of the first signal this soon is not a second request. At Ctrl-C the
 * terminal sends SIGINT to the whole foreground process group, and `npm start`
 * (npm and node in that group) also forwards it to its child: node gets the one
 * Ctrl-C twice, milliseconds apart. (package.json's scripts `exec` node, so npm's
 * child is node itself: otherwise npm's `sh -c` sits between them, dies of the
 * Ctrl-C, and npm exits by SIGINT whatever node's exit code.)
 */
const echoWindowMs = 500

const onSignal = (signal: NodeJS.Signals) => {
  const now = performance.now()
  if (firstSignal === undefined) {
    firstSignal = { signal, at: now }
    return
  }
  if (signal === firstSignal.signal && now - firstSignal.at < echoWindowMs) return
  process.stderr.write(`taskfiber: second ${signal}: exiting at once without waiting for running jobs\n`)
  process.exit(130)
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)

/** The command running, set when its handler begins: how an interruption by a signal ends. */
let running: string | undefined

/** Marks `effect` as command `name`'s handler. */
const handler = (name: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    running = name
    return effect
  })

/**
 * The exit code of a program interrupted by `signal`: `start` shut down
 * gracefully (0); a one-shot command (or a parse) did not do its work, so it says
 * so and exits as a process killed by the signal would (128 + its number).
 */
const interruptedBy = (signal: NodeJS.Signals): number => {
  if (running === "start") return 0
  process.stderr.write(`taskfiber: ${running === undefined ? "interrupted" : `${running} interrupted`} by ${signal} before it finished\n`)
  return 128 + constants.signals[signal]
}

/**
 * A wrong invocation (a missing argument, an unknown flag or command) is one line
 * on stderr and a hint, not the whole help on stdout; `--help` prints the help.
 */
const Usage = CliOutput.layerPresenter({
  present: (event) =>
    event._tag === "InvalidInvocation"
      ? Console.error(
        [
          ...event.errors.slice(0, 1).map((e) => `taskfiber: ${redactSecrets(String((e as { message?: unknown }).message ?? e)).split("\n")[0]}`),
          `taskfiber: run "${["taskfiber", ...event.commandPath.slice(1)].join(" ")} --help" for usage`
        ].join("\n")
      )
      : CliOutput.defaultPresenter.present(event)
})

Command.run(cli, { version: shownVersion }).pipe(
  // Reported here, inside the logging layer (stderr, LOG_FORMAT), not by runMain.
  Effect.tapCause((cause) =>
    Cause.hasInterruptsOnly(cause) || !Runtime.getErrorReported(Cause.squash(cause)) ? Effect.void : Effect.logError(cause)
  ),
  Effect.provide(Layer.mergeAll(NodeServices.layer, LoggingLive, Usage)),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    teardown: (exit, onExit) => {
      if (Exit.isSuccess(exit)) return onExit(0)
      if (Cause.hasInterruptsOnly(exit.cause)) return onExit(firstSignal === undefined ? 130 : interruptedBy(firstSignal.signal))
      return onExit(Runtime.getErrorExitCode(Cause.squash(exit.cause)))
    }
  })
)
