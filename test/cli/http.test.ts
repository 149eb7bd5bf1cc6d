/**
 * `taskfiber start` serves its probes, its health report and its metrics on
 * HTTP_PORT (127.0.0.1 by default), as a real process, and logs no admin token;
 * each step waits for a line of output, never for time.
 */
import { describe, expect, it } from "vitest"
import { childDatabase, processes, uuid } from "../support/Cli.ts"
import { freePort } from "../support/freePort.ts"

const { spawnCli, run, killAll } = processes()
const env = childDatabase(killAll)

describe("taskfiber start's HTTP server", () => {
  it("answers /health/live, /health/ready, /health and /metrics; SIGTERM exits 0", async () => {
    const port = await freePort()
    const start = spawnCli(["start"], { ...env, HTTP_PORT: String(port) })
    await start.waitForLog("http server listening", { url: `http://127.0.0.1:${port}` })
    await start.waitForStdout(/enqueue from another terminal/)
    const get = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${port}${path}`)
      return { status: response.status, text: await response.text() }
    }
    expect(await get("/health/live")).toEqual({ status: 200, text: JSON.stringify({ status: "live" }) })
    expect(JSON.parse((await get("/health/ready")).text)).toEqual({ ready: true, supervisor: "running", reasons: [] })
    const health = await get("/health")
    expect(JSON.parse(health.text)).toMatchObject({ status: expect.stringMatching(/^(HEALTHY|DEGRADED)$/), findings: expect.any(Array) })

    const r = await run(["enqueue", "echo", "{\"via\":\"http\"}"], env)
    expect(r.stdout[0]).toMatch(uuid)
    await start.waitForLog("task settled", { taskId: r.stdout[0]!, outcome: "succeeded" })
    const metrics = await get("/metrics")
    expect(metrics.status).toBe(200)
    expect(metrics.text).toMatch(/^taskfiber_tasks_succeeded_total\{type="echo",queue="default"\} 1$/m)
    expect(metrics.text).toMatch(/^taskfiber_pool_connections_max 10$/m)

    start.child.kill("SIGTERM")
    expect(await start.exitWithin(20_000), start.output()).toBe(0)
  }, 60_000)

  it("logs no admin token, right or wrong, at every level and in every format", async () => {
    const token = "tok-3b1f0c9e5d"
    const wrong = "wrong-7a2c44e1"
    for (const format of ["simple", "structured"]) {
      const port = await freePort()
      const start = spawnCli(["start"], { ...env, HTTP_PORT: String(port), ADMIN_TOKEN: token, LOG_LEVEL: "all", LOG_FORMAT: format })
      await start.waitForStdout(/enqueue from another terminal/)
      const post = async (path: string, bearer: string, body?: unknown) => {
        const response = await fetch(`http://127.0.0.1:${port}${path}`, {
          method: "POST",
          headers: { authorization: `Bearer ${bearer}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) })
        })
        return { status: response.status, body: await response.json() as any }
      }
      const created = await post("/tasks", token, { type: "echo", payload: { n: 1 } })
      expect(created.status).toBe(201)
      const settled = new RegExp(`task settled.*${created.body.id}.*succeeded`)
      await start.waitFor("task settled", () => settled.test(start.output()) || undefined)
      expect((await post("/tasks", wrong, { type: "echo", payload: {} })).status).toBe(401)
      expect((await post(`/tasks/${created.body.id}/retry`, token)).status).toBe(409)
      expect((await post("/tasks/0190f5d2-0000-7000-8000-000000000000/cancel", token)).status).toBe(404)
      start.child.kill("SIGTERM")
      expect(await start.exitWithin(20_000), start.output()).toBe(0)
      expect(start.output()).toContain(created.body.id)
      expect(start.output()).not.toContain(token)
      expect(start.output()).not.toContain(wrong)
    }
  }, 60_000)
})
