/**
 * The demo job catalogue: what `taskfiber start` runs when no `--jobs` module is
 * given, and what `taskfiber enqueue` checks payloads against.
 *
 *   taskfiber enqueue echo '{"hello":"world"}'
 *   taskfiber enqueue flaky '{"failTimes":2}'            # fails twice, then succeeds
 *   taskfiber enqueue sleep '{"ms":5000}'                # checkpoints; resumes after a restart
 *   taskfiber enqueue send-email '{"to":"ada@example.com","subject":"Hi","body":"Hello"}'
 *   taskfiber enqueue generate-report '{"rows":2500}'
 *
 * A module of your own for `--jobs` looks the same: `export const jobs = [...]` (or a
 * default export) of `Job.define(...)` values.
 */
import { createHash } from "node:crypto"
import { Effect, Option, Schema } from "effect"
import { PermanentError, TransientError } from "../domain/Errors.ts"
import * as RetryPolicy from "../domain/RetryPolicy.ts"
import * as Job from "../runtime/Job.ts"
import type { AnyJob } from "../runtime/Job.ts"

const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/** Succeeds at once; its result is its payload (any JSON object). */
export const Echo = Job.define({
  name: "echo",
  payload: Schema.Record(Schema.String, Schema.Json),
  retry: RetryPolicy.none,
  run: (payload) => Effect.succeed(payload)
})

/**
 * Fails with a `TransientError` on its first `failTimes` runs, then succeeds with
 * the run number: shows retries with backoff (200 ms doubling here).
 */
export const Flaky = Job.define({
  name: "flaky",
  payload: Schema.Struct({ failTimes: NonNegativeInt }),
  retry: RetryPolicy.exponential({ baseMs: 200, maxDelayMs: 2000, maxAttempts: 10 }),
  run: (payload, ctx) =>
    ctx.attempt <= payload.failTimes
      ? Effect.fail(new TransientError({ message: `flaky: failing run ${ctx.attempt} of ${payload.failTimes}` }))
      : Effect.succeed({ attempts: ctx.attempt })
})

const SleepCheckpoint = Schema.Struct({ sleptMs: NonNegativeInt })
const decodeSleepCheckpoint = Schema.decodeUnknownOption(SleepCheckpoint)

/** Step of the `sleep` job: the unit of checkpointing (and of lost work on a crash). */
export const sleepStepMs = 100

/**
 * Sleeps `ms` in steps of 100 ms, saving `{ sleptMs }` as checkpoint and a
 * percentage as progress after each step; a run after a restart (graceful
 * release or crash) resumes from the checkpoint. Interruptible between and during
 * steps (`Effect.sleep` is).
 */
export const Sleep = Job.define({
  name: "sleep",
  payload: Schema.Struct({ ms: NonNegativeInt }),
  retry: RetryPolicy.exponential({ baseMs: 500, maxDelayMs: 5000, maxAttempts: 5 }),
  run: (payload, ctx) =>
    Effect.gen(function*() {
      const resumedFrom = Option.match(decodeSleepCheckpoint(ctx.checkpoint), { onNone: () => 0, onSome: (c) => c.sleptMs })
      let slept = Math.min(resumedFrom, payload.ms)
      yield* Effect.logInfo("sleep: started", { taskId: ctx.taskId, attempt: ctx.attempt, ms: payload.ms, resumedFrom: slept })
      while (slept < payload.ms) {
        const step = Math.min(sleepStepMs, payload.ms - slept)
        yield* Effect.sleep(step)
        slept += step
        yield* ctx.saveCheckpoint({ sleptMs: slept })
        yield* ctx.progress({ sleptMs: slept, percent: Math.round((slept / Math.max(1, payload.ms)) * 100) })
      }
      return { sleptMs: slept, resumedFrom }
    })
})

/** A deliberately small address check: something@domain.tld, no spaces. */
const Email = Schema.String.check(
  Schema.isPattern(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, { message: "must be an email address (name@domain.tld)" })
)

/** Domains that do not accept mail: sending there fails permanently (no retry). */
export const undeliverableDomains: ReadonlyArray<string> = ["invalid.example"]

/**
 * Sends an email (here: logs it) and returns a message id derived from the task id,
 * so a retried run reports the same id. A recipient on an undeliverable domain is
 * a `PermanentError`: the task fails at once and lands in the dead letters.
 */
export const SendEmail = Job.define({
  name: "send-email",
  payload: Schema.Struct({
    to: Email,
    subject: Schema.String.check(Schema.isBetweenLength(1, 200)),
    body: Schema.String
  }),
  retry: RetryPolicy.exponential({ baseMs: 1000, maxDelayMs: 60_000, maxAttempts: 5 }),
  queue: "emails",
  // A lane for bulk mail, so that QUEUE_CONCURRENCY=emails-bulk=1 can slow it down
  // without slowing the rest: `enqueue send-email … --queue emails-bulk`.
  otherQueues: ["emails-bulk"],
  run: (payload, ctx) =>
    Effect.gen(function*() {
      const domain = payload.to.slice(payload.to.lastIndexOf("@") + 1).toLowerCase()
      if (undeliverableDomains.includes(domain)) {
        return yield* new PermanentError({ message: `send-email: domain ${domain} does not accept mail (${payload.to})` })
      }
      const messageId = `<${createHash("sha256").update(ctx.taskId).digest("hex").slice(0, 16)}@taskfiber.example>`
      yield* Effect.logInfo("send-email: sent", { taskId: ctx.taskId, to: payload.to, subject: payload.subject, messageId })
      return { messageId, to: payload.to }
    })
})

const ReportCheckpoint = Schema.Struct({ page: NonNegativeInt, total: Schema.Finite })
const decodeReportCheckpoint = Schema.decodeUnknownOption(ReportCheckpoint)

/** Rows per page of `generate-report`. */
export const reportPageSize = 500

/**
 * Builds a report over `rows` rows, one page of 500 at a time, checkpointing the
 * page and the running total so a restarted run continues where it stopped.
 */
export const GenerateReport = Job.define({
  name: "generate-report",
  payload: Schema.Struct({ rows: NonNegativeInt.check(Schema.isLessThanOrEqualTo(10_000_000)) }),
  queue: "reports",
  timeout: "10 minutes",
  run: (payload, ctx) =>
    Effect.gen(function*() {
      const pages = Math.ceil(payload.rows / reportPageSize)
      const resumed = Option.getOrElse(decodeReportCheckpoint(ctx.checkpoint), () => ({ page: 0, total: 0 }))
      let page = resumed.page
      let total = resumed.total
      while (page < pages) {
        const from = page * reportPageSize
        const to = Math.min(payload.rows, from + reportPageSize)
        // "Process" a page: a deterministic value per row.
        for (let row = from; row < to; row++) total += row % 7
        page += 1
        yield* ctx.saveCheckpoint({ page, total })
        yield* ctx.progress({ page, pages })
        yield* Effect.yieldNow
      }
      return { rows: payload.rows, pages, total, average: payload.rows === 0 ? 0 : total / payload.rows }
    })
})

/** The catalogue. */
export const jobs: ReadonlyArray<AnyJob> = [Echo, Flaky, Sleep, SendEmail, GenerateReport]

export default jobs
