/**
 * `taskfiber start` serves its probes, its health report and its metrics on
 * HTTP_PORT (127.0.0.1 by default), as a real process; each step waits for a line
 * of output, never for time.
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
})
