/**
 * `taskfiber health` as a real process against a test database: the exit code is
 * the status's severity, `--json` is one object, a database that cannot be reached
 * is a critical report with its reason (password redacted), a malformed threshold
 * is one line naming it.
 */
import { Context, Effect, Layer, Redacted } from "effect"
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "effect/sql/SqlClient"
import { afterAll, describe, expect, it } from "vitest"
import { childDatabase, type Env, processes } from "../support/Cli.ts"
import { freePort } from "../support/freePort.ts"

const { run, killAll } = processes()
const env = childDatabase(killAll)
afterAll(killAll)

/** Runs statements on the children's database. */
const admin = (e: Env, ...statements: ReadonlyArray<string>) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const ctx = yield* Layer.build(PgClient.layer({ url: Redacted.make(e.DATABASE_URL!), maxConnections: 1 }))
    for (const s of statements) yield* Context.get(ctx, SqlClient).unsafe(s)
  })))

/** The server is shared with other test files: judge only this database's tasks. */
const ownChecks: Env = { HEALTH_SERVER_CONNECTIONS: "100,100,100", HEALTH_CACHE_HIT: "0,0,0" }

describe("taskfiber health", () => {
  it("exit code by status: 0 healthy, 1 degraded, 2 unhealthy, 3 critical; the table names what to change", async () => {
    const healthy = await run(["health"], { ...env, ...ownChecks })
    expect(healthy.code, healthy.proc.output()).toBe(0)
    expect(healthy.stdout[0]).toMatch(/^health: HEALTHY \(sampled \d{4}-\d\d-\d\dT/)
    expect(healthy.stdout[1]).toMatch(/^STATUS\s+CHECK\s+VALUE\s+FINDING$/)
    expect(healthy.stdout.join("\n")).toMatch(/not measured: pool_usage, pool_probe, query_time, kafka_connection, kafka_lag \(not measured by this command: its own pool/)

    // One dead letter: degraded.
    await admin(env, "insert into taskfiber.dead_letters (source, reason) values ('kafka', 'not JSON')")
    const degraded = await run(["health"], { ...env, ...ownChecks })
    expect(degraded.code, degraded.proc.output()).toBe(1)
    const row = degraded.stdout.findIndex((l) => /^DEGRADED\s+dead_letters\s+1\s+1 dead letter in the last hour$/.test(l))
    expect(row, degraded.proc.output()).toBeGreaterThan(1)
    expect(degraded.stdout[row + 1]).toMatch(/^\s+→ tasks failed for good .*replay/)

    // Ten: unhealthy; a hundred: critical.
    await admin(env, "insert into taskfiber.dead_letters (source, reason) select 'kafka', 'not JSON' from generate_series(1, 9)")
    expect((await run(["health"], { ...env, ...ownChecks })).code).toBe(2)
    await admin(env, "insert into taskfiber.dead_letters (source, reason) select 'kafka', 'not JSON' from generate_series(1, 90)")
    expect((await run(["health"], { ...env, ...ownChecks })).code).toBe(3)
    // Thresholds from the environment.
    expect((await run(["health"], { ...env, ...ownChecks, HEALTH_DEAD_LETTERS: "1000,2000,3000" })).code).toBe(0)
    await admin(env, "truncate taskfiber.dead_letters")
  }, 60_000)

  it("--json prints one object: status, when sampled, findings and the unmeasured checks", async () => {
    await admin(env, "insert into taskfiber.tasks (queue, type, run_at) select 'mail', 'echo', now() - interval '2 minutes' from generate_series(1, 3)")
    const r = await run(["health", "--json"], { ...env, ...ownChecks })
    expect(r.code, r.proc.output()).toBe(1)
    expect(r.stdout).toHaveLength(1)
    const report = JSON.parse(r.stdout[0]!)
    expect(Object.keys(report)).toEqual(["status", "sampled_at", "findings", "unmeasured"])
    expect(report.status).toBe("DEGRADED")
    expect(new Date(report.sampled_at).getTime()).not.toBeNaN()
    const oldest = report.findings.find((f: { check: string }) => f.check === "oldest_ready")
    expect(oldest).toMatchObject({ status: "DEGRADED", unit: "ms", message: expect.stringMatching(/queue "mail"/), recommendation: expect.any(String) })
    expect(oldest.value).toBeGreaterThanOrEqual(120_000)
    expect(report.findings.find((f: { check: string }) => f.check === "ready_depth")).toMatchObject({ status: "HEALTHY", value: 3 })
    expect(report.unmeasured.map((u: { check: string }) => u.check)).toEqual(
      expect.arrayContaining(["pool_usage", "pool_probe", "query_time", "kafka_connection", "kafka_lag"]))
    await admin(env, "truncate taskfiber.tasks, taskfiber.task_events")
  }, 60_000)

  it("a database that cannot be reached is a critical report with the reason, the password redacted", async () => {
    const closed = await freePort()
    const url = `postgres://u:secret@127.0.0.1:${closed}/x`
    const text = await run(["health"], { ...env, DATABASE_URL: url })
    expect(text.code, text.proc.output()).toBe(3)
    expect(text.stdout[0]).toBe("health: CRITICAL")
    expect(text.stdout.join("\n")).toMatch(/CRITICAL\s+database\s+-\s+the database cannot be read: cannot reach PostgreSQL: .*ECONNREFUSED/)
    const json = await run(["health", "--json"], { ...env, DATABASE_URL: url })
    expect(json.code).toBe(3)
    const report = JSON.parse(json.stdout[0]!)
    expect(report).toMatchObject({ status: "CRITICAL", sampled_at: null, findings: [{ check: "database", status: "CRITICAL" }] })
    expect(text.stdout.join("\n") + text.stderr + json.stdout.join("\n") + json.stderr).not.toMatch(/secret/)
  }, 60_000)

  it("a malformed threshold is one line naming the variable, exit 1", async () => {
    const r = await run(["health"], { ...env, HEALTH_QUERY_TIME: "250ms,100ms,500ms" })
    expect(r.code).toBe(1)
    expect(r.stdout).toEqual([])
    expect(r.stderr.trim()).toBe(
      `taskfiber: invalid setting HEALTH_QUERY_TIME="250ms,100ms,500ms": expected three durations (such as 250ms or 5 minutes), degraded,unhealthy,critical, rising or equal`)
  }, 60_000)
})
