/**
 * The `taskfiber` binary as real processes (`node bin/taskfiber.js …`) against a
 * test database: start, enqueue, status, error messages, graceful and forced
 * shutdown (the embedded server shared between processes: embedded.test.ts).
 *
 * Nothing is ordered by sleeping: each step waits for a line of output or for a
 * process to exit, with a bounded timeout.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Context, Effect, Layer, Redacted } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { describe, expect, it } from "vitest"
import { childDatabase, type Env, pastEchoWindow, type Proc, processes, root, uuid } from "../support/Cli.ts"
import * as TestDatabase from "../support/TestDatabase.ts"
import { freePort } from "../support/freePort.ts"

const { spawnCli, run, killAll } = processes()

const enqueueId = async (env: Env, type: string, json: string, ...flags: Array<string>) => {
  const r = await run(["enqueue", type, json, ...flags], env)
  expect(r.code, r.proc.output()).toBe(0)
  expect(r.stdout).toHaveLength(1)
  expect(r.stdout[0]).toMatch(uuid)
  return r.stdout[0]!
}

/** Runs one statement on the children's database. */
const admin = (env: Env, statement: string) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(env.DATABASE_URL!), maxConnections: 1 }))
    yield* Context.get(ctx, SqlClient).unsafe(statement)
  })))

const statusJson = async (env: Env, id: string) => {
  const r = await run(["status", id, "--json"], env)
  expect(r.code, r.proc.output()).toBe(0)
  expect(r.stdout).toHaveLength(1)
  return JSON.parse(r.stdout[0]!) as Record<string, any>
}

const env = childDatabase(killAll)

describe("taskfiber binary on DATABASE_URL", () => {
  let start: Proc
  let releasedId: string

  it("start runs the example catalogue; an enqueued echo task settles and status --json shows it", async () => {
    start = spawnCli(["start"], env)
    await start.waitForStdout(/enqueue from another terminal/)
    expect(start.stdout.join("\n")).toContain("scripts/node.sh npm run -s taskfiber -- enqueue echo '{\"hello\":\"world\"}'")
    expect(start.stdout.join("\n")).toMatch(/starting on PostgreSQL at postgres:\/\//)

    // The banner's hint works as printed, in a shell in the repository's folder.
    const hint = start.stdout.find((l) => l.includes(" enqueue echo "))!.trim()
    const hinted = await promisify(execFile)("bash", ["-c", hint], { cwd: root, env: env as NodeJS.ProcessEnv })
    const hintedId = hinted.stdout.trim()
    expect(hintedId).toMatch(uuid)
    await start.waitForLog("task settled", { taskId: hintedId, outcome: "succeeded" })

    const id = await enqueueId(env, "echo", "{\"a\":1}")
    await start.waitForLog("task settled", { taskId: id, outcome: "succeeded" })

    const task = await statusJson(env, id)
    expect(task).toMatchObject({ id, type: "echo", queue: "default", status: "succeeded", attempt: 1, result: { a: 1 }, last_error: null })
    for (const key of ["max_attempts", "priority", "progress", "checkpoint", "run_at", "created_at", "started_at", "finished_at"]) {
      expect(task).toHaveProperty(key)
    }
    expect(task.events.map((e: { to: string }) => e.to)).toEqual(["queued", "running", "succeeded"])

    const human = await run(["status", id], env)
    expect(human.code).toBe(0)
    expect(human.stdout.join("\n")).toMatch(/status\s+succeeded, attempt 1 of 1/)
    expect(human.stdout.join("\n")).toContain("running -> succeeded")
  }, 60_000)

  it("flaky with failTimes 2 is retried and succeeds on attempt 3", async () => {
    const id = await enqueueId(env, "flaky", "{\"failTimes\":2}")
    await start.waitForLog("task settled", { taskId: id, outcome: "succeeded" })
    const task = await statusJson(env, id)
    expect(task).toMatchObject({ status: "succeeded", attempt: 3, result: { attempts: 3 } })
    expect(task.events.filter((e: { to: string }) => e.to === "retrying")).toHaveLength(2)
  }, 60_000)

  it("bad input exits 1 with a clear message on stderr and nothing on stdout", async () => {
    const [notJson, unknownType, badField, badDelay, unknownId] = await Promise.all([
      run(["enqueue", "echo", "not json"], env),
      run(["enqueue", "nope", "{}"], env),
      run(["enqueue", "flaky", "{\"failTimes\":\"two\"}"], env),
      run(["enqueue", "echo", "{}", "--delay", "soon"], env),
      run(["status", "00000000-0000-4000-8000-000000000000"], env)
    ])
    expect(notJson).toMatchObject({ code: 1, stdout: [] })
    expect(notJson.stderr).toMatch(/payload is not valid JSON/)
    expect(unknownType).toMatchObject({ code: 1, stdout: [] })
    expect(unknownType.stderr).toMatch(/unknown task type "nope"; known types: echo, flaky, sleep/)
    expect(badField).toMatchObject({ code: 1, stdout: [] })
    expect(badField.stderr).toMatch(/invalid payload for task type "flaky" at failTimes/)
    expect(badDelay).toMatchObject({ code: 1, stdout: [] })
    expect(badDelay.stderr).toMatch(/--delay/)
    expect(unknownId).toMatchObject({ code: 1, stdout: [] })
    expect(unknownId.stderr).toMatch(/no task with id/)
  }, 60_000)

  it("a server that cannot be reached or a database that does not exist is said so, not as a failed migration", async () => {
    const closed = await freePort()
    const [refused, missing] = await Promise.all([
      run(["status", "00000000-0000-4000-8000-000000000000"], { ...env, DATABASE_URL: `postgres://u:secret@127.0.0.1:${closed}/x` }),
      run(["enqueue", "echo", "{}"], { ...env, DATABASE_URL: TestDatabase.urlForDatabase(TestDatabase.serverUrl(), "taskfiber_no_such_db") })
    ])
    expect(refused).toMatchObject({ code: 1, stdout: [] })
    expect(refused.stderr).toMatch(/\ntaskfiber: cannot reach PostgreSQL: connect ECONNREFUSED 127\.0\.0\.1:\d+$/)
    expect(missing).toMatchObject({ code: 1, stdout: [] })
    expect(missing.stderr).toMatch(/\ntaskfiber: cannot connect to PostgreSQL: database "taskfiber_no_such_db" does not exist/)
    expect(refused.stderr + missing.stderr).not.toMatch(/migration failed|secret/)
  }, 60_000)

  it("a missing argument or an unknown command is one error line and a hint on stderr, not the help", async () => {
    const [missing, unknown] = await Promise.all([run(["enqueue"], env), run(["nosuch"], env)])
    expect(missing).toMatchObject({ code: 1, stdout: [] })
    expect(missing.stderr).toBe("taskfiber: Missing required argument: type\ntaskfiber: run \"taskfiber enqueue --help\" for usage")
    expect(unknown).toMatchObject({ code: 1, stdout: [] })
    expect(unknown.stderr).toMatch(/^taskfiber: Unknown subcommand "nosuch".*\ntaskfiber: run "taskfiber --help" for usage$/)
  }, 60_000)

  it("enqueue's --delay and --priority out of range, and a payload nested 9,000 deep, are one line each", async () => {
    const [huge, negative, fractional] = await Promise.all([
      run(["enqueue", "echo", "{}", "--delay", "99999999999999999"], env),
      run(["enqueue", "echo", "{}", "--delay=-5 seconds"], env),
      run(["enqueue", "echo", "{}", "--priority", "1.5"], env)
    ])
    expect(huge).toMatchObject({ code: 1, stdout: [], stderr: "taskfiber: --delay: \"99999999999999999\" is too large (at most 10 years)" })
    expect(negative).toMatchObject({ code: 1, stdout: [] })
    expect(negative.stderr).toMatch(/^taskfiber: --delay: "-5 seconds" is negative/)
    expect(fractional).toMatchObject({ code: 1, stdout: [], stderr: "taskfiber: --priority: \"1.5\" is not an integer in [-1000, 1000]" })
    const deep = await run(["enqueue", "echo", `{"a":${"[".repeat(9000)}${"]".repeat(9000)}}`], env)
    expect(deep).toMatchObject({ code: 1, stdout: [] })
    expect(deep.stderr).toMatch(/\ntaskfiber: invalid enqueue request at "payload": nested deeper than 1000 levels$/)
  }, 60_000)

  it("a setting out of range stops every command before it starts: one line naming the variable and its value, exit 1", async () => {
    const cases: ReadonlyArray<readonly [Env, RegExp]> = [
      [{ MAX_CONCURRENT_JOBS: "0" }, /^taskfiber: invalid setting MAX_CONCURRENT_JOBS="0": expected a value between 1 and 10000$/],
      [{ LOG_LEVEL: "loud" }, /^taskfiber: invalid setting LOG_LEVEL="loud": expected one of all, trace, debug, info, warn/],
      [{ LOG_FORMAT: "xml" }, /^taskfiber: invalid setting LOG_FORMAT="xml": expected one of simple, structured, otel, text, json$/],
      [{ QUEUE_CONCURRENCY: "emails" }, /^taskfiber: invalid setting QUEUE_CONCURRENCY="emails": expected queue=limit/],
      [{ CLAIM_BATCH: "0" }, /^taskfiber: invalid setting CLAIM_BATCH="0": expected a value between 1 and 10000$/],
      [{ DB_POOL_MAX: "0" }, /^taskfiber: invalid setting DB_POOL_MAX="0": expected a value between 1 and 1000$/],
      [{ LEASE_DURATION: "0 seconds" }, /^taskfiber: invalid setting LEASE_DURATION="0 seconds": expected a duration longer than 0$/],
      [{ LEASE_DURATION: "999999999 days" }, /^taskfiber: invalid setting LEASE_DURATION="999999999 days": expected a duration of at most 24 days$/],
      [{ REAP_INTERVAL: "0 millis" }, /^taskfiber: invalid setting REAP_INTERVAL="0 millis": expected a duration longer than 0$/],
      [{ JOB_TIMEOUT: "-5 seconds" }, /^taskfiber: invalid setting JOB_TIMEOUT="-5 seconds": /],
      [{ DB_POOL_MIN: "-3" }, /^taskfiber: invalid setting DB_POOL_MIN="-3": expected a value between 0 and 1000$/],
      [{ REAP_INTERVAL: "soon" }, /^taskfiber: invalid setting REAP_INTERVAL="soon": expected milliseconds or a duration such as "30 seconds"$/]
    ]
    const commands = [["start"], ["status", "00000000-0000-4000-8000-000000000000"], ["enqueue", "echo", "{}"]]
    const results = await Promise.all(cases.map(([extra], i) => run(commands[i % commands.length]!, { ...env, ...extra })))
    results.forEach((r, i) => {
      expect(r, JSON.stringify(cases[i]![0])).toMatchObject({ code: 1, stdout: [] })
      expect(r.stderr).toMatch(cases[i]![1])
    })
  }, 60_000)

  it("start refuses QUEUE_CONCURRENCY naming a queue no loaded job runs in: one line, exit 1", async () => {
    const r = await run(["start"], { ...env, QUEUE_CONCURRENCY: "nosuchqueue=1" })
    expect(r.code, r.proc.output()).toBe(1)
    expect(r.stderr).toBe(
      `taskfiber: invalid setting QUEUE_CONCURRENCY="nosuchqueue=1": no job runs in queue "nosuchqueue" (queues: default, emails, emails-bulk, reports)`
    )
    expect(r.stdout.join("\n")).not.toMatch(/running jobs/)
  }, 60_000)

  it("enqueue options: priority, delay, queue and dedupe key reach the task", async () => {
    const email = JSON.stringify({ to: "ada@example.com", subject: "Hi", body: "Hello" })
    const flags = ["--priority", "7", "--delay", "1 hour", "--queue", "emails-bulk", "--dedupe-key", "cli-test-1"]
    const id = await enqueueId(env, "send-email", email, ...flags)
    const again = await run(["enqueue", "send-email", email, "--dedupe-key", "cli-test-1", "--queue", "emails-bulk"], env)
    expect(again.stdout).toEqual([id])
    expect(again.stderr).toMatch(/exists already/)
    const task = await statusJson(env, id)
    expect(task).toMatchObject({ status: "queued", priority: 7, queue: "emails-bulk", dedupe_key: "cli-test-1" })
    expect(new Date(task.run_at).getTime() - new Date(task.created_at).getTime()).toBeGreaterThan(3_500_000)
    // `start` runs the example catalogue, whose send-email serves emails-bulk too.
    expect(task.served_by).toHaveLength(1)
  }, 60_000)

  it("RETRY_MAX_ATTEMPTS is the attempt limit of a job with no retry policy; a job's own policy keeps its limit", async () => {
    const limited = { ...env, RETRY_MAX_ATTEMPTS: "3" }
    const [report, flaky] = await Promise.all([
      enqueueId(limited, "generate-report", "{\"rows\":1}", "--delay", "1 hour"),
      enqueueId(limited, "flaky", "{\"failTimes\":0}", "--delay", "1 hour")
    ])
    const [reportTask, flakyTask] = await Promise.all([statusJson(env, report), statusJson(env, flaky)])
    expect(reportTask).toMatchObject({ max_attempts: 3 })
    expect(flakyTask).toMatchObject({ max_attempts: 10 })
  }, 60_000)

  // A task in a queue that no worker serves would wait in silence: the enqueue is
  // refused, naming the job's queues; one written past the job (raw SQL, another
  // producer) is shown as unserved by `status`.
  it("enqueue into a queue that is not the job's is refused; status says when no live worker serves a task", async () => {
    const refused = await run(["enqueue", "echo", "{}", "--queue", "other"], env)
    expect(refused).toMatchObject({ code: 1, stdout: [] })
    expect(refused.stderr).toMatch(/task type "echo" runs in queue "default", not "other"/)
    const id = await enqueueId(env, "echo", "{}", "--delay", "1 hour")
    await admin(env, `update taskfiber.tasks set queue = 'nobody-serves' where id = '${id}'`)
    const task = await statusJson(env, id)
    expect(task).toMatchObject({ queue: "nobody-serves", served_by: [] })
    const text = await run(["status", id], env)
    expect(text.stdout.join("\n")).toMatch(/no live worker serves queue "nobody-serves" with type "echo"/)
  }, 60_000)

  it("SIGTERM while a sleep task runs: start exits 0 within the grace period, the task is released to queued", async () => {
    const id = await enqueueId(env, "sleep", "{\"ms\":10000}")
    await start.waitForLog("sleep: started", { taskId: id })
    const t0 = Date.now()
    start.child.kill("SIGTERM")
    expect(await start.exitWithin(10_000)).toBe(0)
    // SHUTDOWN_GRACE is 500 ms; the rest is closing the pool and the process.
    expect(Date.now() - t0).toBeLessThan(5_000)
    await start.waitForLog("task settled", { taskId: id, outcome: "released" }, 1_000)

    const task = await statusJson(env, id)
    expect(task).toMatchObject({ status: "queued", attempt: 0, finished_at: null })
    expect(task.checkpoint.sleptMs).toBeGreaterThan(0)
    expect(task.events.map((e: { to: string }) => e.to)).toEqual(["queued", "running", "queued"])
    releasedId = id
  }, 60_000)

  it("a new start resumes the released task from its checkpoint; a second SIGTERM during shutdown exits at once", async () => {
    const released = await statusJson(env, releasedId)
    const again = spawnCli(["start"], { ...env, SHUTDOWN_GRACE: "60 seconds" })
    const started = await again.waitForLog("sleep: started", { taskId: releasedId })
    expect(started).toMatchObject({ resumedFrom: released.checkpoint.sleptMs, attempt: 1 })

    const first = Date.now()
    again.child.kill("SIGTERM")
    await again.waitForLog("shutting down: waiting for running jobs", {})
    await pastEchoWindow(first)
    const t0 = Date.now()
    again.child.kill("SIGTERM")
    expect(await again.exitWithin(5_000)).toBe(130)
    expect(Date.now() - t0).toBeLessThan(3_000)
    expect(again.stderr.join("\n")).toMatch(/second SIGTERM: exiting at once/)
  }, 60_000)
})
