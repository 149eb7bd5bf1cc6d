/**
 * `taskfiber pause` and `taskfiber resume` as real processes against a test
 * database: one line each on stdout, exit 0, whether or not they changed anything;
 * quiet unless asked; a running `start` follows them (a task of the paused queue
 * waits while another queue's runs, and runs once `resume` wakes the service).
 *
 * Nothing is ordered by sleeping: each step waits for a line of output or for a
 * process to exit, with a bounded timeout.
 */
import { Context, Effect, Layer, Redacted } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { describe, expect, it } from "vitest"
import { childDatabase, type Env, processes, uuid } from "../support/Cli.ts"

const { spawnCli, run, killAll } = processes()
const env = childDatabase(killAll)

/** Rows of one query on the children's database. */
const query = <A extends object>(statement: string) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(env.DATABASE_URL!), maxConnections: 1 }))
    return yield* Context.get(ctx, SqlClient).unsafe<A>(statement)
  })))

/** Runs a command that must succeed; its stdout lines. */
const ok = async (args: ReadonlyArray<string>, childEnv: Env = env) => {
  const r = await run(args, childEnv)
  expect(r.code, r.proc.output()).toBe(0)
  return r.stdout
}

describe("taskfiber pause / resume", () => {
  it("pause and resume print one line each, whether or not they changed anything, and exit 0", async () => {
    expect(await ok(["pause", "cli-pause", "--reason", "relay down"])).toEqual(["queue cli-pause paused"])
    expect(await ok(["pause", "cli-pause", "--reason", "again"])).toEqual(["queue cli-pause was already paused"])
    expect(await query<{ queue: string; reason: string }>("select queue, reason from taskfiber.paused_queues"))
      .toEqual([{ queue: "cli-pause", reason: "relay down" }])
    expect(await ok(["resume", "cli-pause"])).toEqual(["queue cli-pause resumed"])
    expect(await ok(["resume", "cli-pause"])).toEqual(["queue cli-pause was not paused"])
    expect(await query("select queue from taskfiber.paused_queues")).toEqual([])
  }, 60_000)

  it("they are quiet unless LOG_LEVEL says otherwise; a queue name out of bounds is one line on stderr and exit 1", async () => {
    const quiet = await run(["pause", "cli-quiet"], { ...env, LOG_LEVEL: undefined })
    expect(quiet).toMatchObject({ code: 0, stdout: ["queue cli-quiet paused"], stderr: "" })
    const resumed = await run(["resume", "cli-quiet"], { ...env, LOG_LEVEL: undefined })
    expect(resumed).toMatchObject({ code: 0, stdout: ["queue cli-quiet resumed"], stderr: "" })
    const [empty, long] = await Promise.all([
      run(["pause", ""], { ...env, LOG_LEVEL: undefined }),
      run(["resume", "q".repeat(129)], { ...env, LOG_LEVEL: undefined })
    ])
    expect(empty).toMatchObject({ code: 1, stdout: [], stderr: "taskfiber: a queue name is 1 to 128 characters: \"\"" })
    expect(long).toMatchObject({ code: 1, stdout: [] })
    expect(long.stderr).toMatch(/^taskfiber: a queue name is 1 to 128 characters/)
  }, 60_000)

  it("a running start follows: the paused queue's task waits while another queue's runs, and runs once resumed", async () => {
    const start = spawnCli(["start"], env)
    await start.waitForStdout(/enqueue from another terminal/)
    expect(await ok(["pause", "emails"])).toEqual(["queue emails paused"])
    const [mail] = await ok(["enqueue", "send-email", JSON.stringify({ to: "ada@example.com", subject: "Hi", body: "Hello" })])
    expect(mail).toMatch(uuid)
    const [echo] = await ok(["enqueue", "echo", "{}"])
    await start.waitForLog("task settled", { taskId: echo, outcome: "succeeded" })
    expect(await query(`select status::text, attempt from taskfiber.tasks where id = '${mail}'`))
      .toEqual([{ status: "queued", attempt: 0 }])

    expect(await ok(["resume", "emails"])).toEqual(["queue emails resumed"])
    // Well within the service's 30 s idle re-check: the resume's notification woke it.
    await start.waitForLog("task settled", { taskId: mail, outcome: "succeeded" }, 10_000)
  }, 60_000)
})
