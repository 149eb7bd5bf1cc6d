/**
 * The zero-configuration database as a newcomer meets it: several `taskfiber`
 * processes in several terminals, on the embedded server, with no DATABASE_URL.
 * Real processes; each step waits for a line of output or an exit, never a sleep.
 */
import { existsSync } from "node:fs"
import { rm } from "node:fs/promises"
import { createServer } from "node:net"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { isListening } from "../../src/store/EmbeddedPostgres.ts"
import { childEnv, pastEchoWindow, type Proc, processes, root, uuid } from "../support/Cli.ts"
import { freePort } from "../support/freePort.ts"
import { openProjectToServerUser, serverFolder } from "../support/serverFolder.ts"

const { spawnCli, run, killAll } = processes()

/** The environment of a fresh embedded folder in a temporary directory. */
const freshFolder = async () => {
  const dir = await serverFolder("taskfiber-embedded-")
  const port = await freePort()
  const dataDir = join(dir, "postgres")
  return { dir, port, dataDir, env: childEnv({ EMBEDDED_PG_DIR: dataDir, EMBEDDED_PG_PORT: String(port) }) }
}

const folders: Array<string> = []
afterAll(async () => {
  await killAll()
  for (const dir of folders) await rm(dir, { recursive: true, force: true })
}, 60_000)

/** The log lines at error level, and any line that looks like a stack trace. */
const troubles = (p: Proc) => p.stderr.filter((l) => /"level":"(ERROR|FATAL)"|\n\s+at |^\s+at /.test(l))

describe("the embedded server shared by several processes", () => {
  it("start and enqueue typed at the same moment on a fresh folder: one server, the task succeeds", async () => {
    const { dir, port, dataDir, env } = await freshFolder()
    folders.push(dir)
    const start = spawnCli(["start"], env)
    const enqueue = spawnCli(["enqueue", "echo", "{\"at\":\"once\"}"], env)
    expect(await enqueue.exitWithin(60_000), enqueue.output()).toBe(0)
    const id = enqueue.stdout[0]!
    expect(id).toMatch(uuid)
    await start.waitForStdout(/enqueue from another terminal/, 60_000)
    expect(start.stdout.join("\n")).toContain(`embedded PostgreSQL, data in ${dataDir} (port ${port}`)
    await start.waitForLog("task settled", { taskId: id, outcome: "succeeded" }, 30_000)
    // One of the two started the server; the other connected to it.
    const said = [...start.logs(), ...enqueue.logs()].map((l) => l.message).filter((m) => m.startsWith("using embedded"))
    expect(said.filter((m) => m.includes("already running"))).toHaveLength(said.length - 1)
    // The new database is said once, even by the quiet enqueue.
    const created = [...start.logs(), ...enqueue.logs()].filter((l) => l.message.startsWith("created a new embedded PostgreSQL database"))
    expect(created).toHaveLength(1)
    start.child.kill("SIGTERM")
    expect(await start.exitWithin(15_000)).toBe(0)
    expect(troubles(start), start.output()).toEqual([])
    expect(await isListening(port)).toBe(false)
  }, 120_000)

  it("stopping the start that started the server leaves it to a second start, which goes on running tasks", async () => {
    const { dir, port, env } = await freshFolder()
    folders.push(dir)
    const first = spawnCli(["start"], env)
    await first.waitForStdout(/enqueue from another terminal/, 60_000)
    const second = spawnCli(["start"], env)
    await second.waitForStdout(/enqueue from another terminal/, 60_000)
    first.child.kill("SIGTERM")
    expect(await first.exitWithin(15_000), first.output()).toBe(0)
    expect(await isListening(port)).toBe(true)

    const enqueued = await run(["enqueue", "echo", "{\"after\":\"first stopped\"}"], env)
    expect(enqueued.code, enqueued.proc.output()).toBe(0)
    await second.waitForLog("task settled", { taskId: enqueued.stdout[0], outcome: "succeeded" }, 30_000)
    expect(troubles(second), second.output()).toEqual([])

    second.child.kill("SIGTERM")
    expect(await second.exitWithin(15_000), second.output()).toBe(0)
    expect(await isListening(port)).toBe(false)
  }, 120_000)

  it("a start forced out by a second signal stops the server on its way out when it was the last user", async () => {
    const { dir, port, env } = await freshFolder()
    folders.push(dir)
    const start = spawnCli(["start"], { ...env, SHUTDOWN_GRACE: "60 seconds" })
    await start.waitForStdout(/enqueue from another terminal/, 60_000)
    const enqueued = await run(["enqueue", "sleep", "{\"ms\":60000}"], env)
    expect(enqueued.code, enqueued.proc.output()).toBe(0)
    await start.waitForLog("sleep: started", { taskId: enqueued.stdout[0] })
    const first = Date.now()
    start.child.kill("SIGTERM")
    await start.waitForLog("shutting down: waiting for running jobs", {})
    await pastEchoWindow(first)
    start.child.kill("SIGTERM")
    expect(await start.exitWithin(10_000), start.output()).toBe(130)
    expect(await isListening(port)).toBe(false)
  }, 120_000)

  it("a command run from a subfolder of the project finds the same data folder", async () => {
    await openProjectToServerUser()
    // EMBEDDED_PG_DIR relative, as by default: resolved from the project root.
    const relative = `.data/test-embedded-${process.pid}`
    const dataDir = join(root, relative)
    folders.push(dataDir, `${dataDir}.password`, `${dataDir}.users`, `${dataDir}.log`, `${dataDir}.lock`)
    const env = childEnv({ EMBEDDED_PG_DIR: relative, EMBEDDED_PG_PORT: String(await freePort()) })
    const enqueued = await run(["enqueue", "echo", "{\"from\":\"the root\"}", "--delay", "1 hour"], env)
    expect(enqueued.code, enqueued.proc.output()).toBe(0)
    const status = await run(["status", enqueued.stdout[0]!], env, { cwd: join(root, "src", "cli") })
    expect(status.code, status.proc.output()).toBe(0)
    expect(status.stdout.join("\n")).toContain("queued")
    expect(existsSync(join(root, "src", "cli", ".data"))).toBe(false)
    // A task not found says where it was looked for.
    const unknown = await run(["status", "01a23a8f-9d4b-799a-9758-de7298eb7c55"], env, { cwd: join(root, "src", "cli") })
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain(`no task with id 01a23a8f-9d4b-799a-9758-de7298eb7c55 on embedded PostgreSQL, data in ${dataDir}`)
  }, 120_000)

  it("start on a port another program holds: one line saying so and what to set, exit 1", async () => {
    const { dir, env } = await freshFolder()
    folders.push(dir)
    const holder = createServer()
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve))
    const port = (holder.address() as { port: number }).port
    try {
      const start = await run(["start"], { ...env, EMBEDDED_PG_PORT: String(port) })
      expect(start.code, start.proc.output()).toBe(1)
      const lines = start.stderr.split("\n").filter((l) => l.startsWith("taskfiber:"))
      expect(lines).toEqual([
        expect.stringMatching(new RegExp(`^taskfiber: embedded PostgreSQL failed to start in .* on port ${port}: port ${port} is in use by another program: set EMBEDDED_PG_PORT to a free port$`))
      ])
      expect(troubles(start.proc), start.proc.output()).toEqual([])
    } finally {
      holder.close()
    }
  }, 60_000)
})
