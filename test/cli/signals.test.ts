/**
 * Signals and exit codes of the binary as real processes: a one-shot command
 * stopped before it finished exits 128 + the signal's number and says so; `npm
 * start` stopped with Ctrl-C (SIGINT to the whole process group, as a terminal
 * sends it, which npm forwards to node as well) shuts down gracefully and exits
 * 0; a genuinely second signal still exits at once (130).
 *
 * Nothing is ordered by sleeping: each step waits for a connection, a line of
 * output or an exit, with a bounded timeout.
 */
import { createServer, type Server, type Socket } from "node:net"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { childDatabase, type Env, pastEchoWindow, processes, root, uuid } from "../support/Cli.ts"

const { spawnCli: spawnProc, killAll } = processes()

/** `npm start` in a process group of its own, as a terminal runs it. */
const npmStart = (env: Env) =>
  spawnProc([], { ...env, npm_config_update_notifier: "false" }, { command: [join(root, "scripts", "node.sh"), "npm", "start"], detached: true })

/** Whether any process of the group `pgid` is left. */
const groupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * A PostgreSQL URL whose server accepts connections and never answers, so a
 * command using it is reliably still waiting; `connected` resolves at the first
 * connection (the command has started its work).
 */
const silentServer = async () => {
  const sockets: Array<Socket> = []
  let connected!: () => void
  const first = new Promise<void>((resolve) => (connected = resolve))
  const server: Server = createServer((socket) => {
    sockets.push(socket)
    connected()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const address = server.address()
  const port = typeof address === "object" && address ? address.port : 0
  servers.push({ server, sockets })
  return { url: `postgres://u:secret@127.0.0.1:${port}/x`, connected: first }
}
const servers: Array<{ readonly server: Server; readonly sockets: Array<Socket> }> = []

/** Resolves with `promise`, or rejects after `ms` saying what it waited for. */
const within = <A>(what: string, ms: number, promise: Promise<A>): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))
  ]).finally(() => clearTimeout(timer))
}

const env = childDatabase(async () => {
  await killAll()
  for (const { server, sockets } of servers) {
    for (const s of sockets) s.destroy()
    server.close()
  }
})

describe("a one-shot command stopped by a signal", () => {
  it("exits 128 + the signal's number and says which command did not finish", async () => {
    const [forEnqueue, forMigrate] = await Promise.all([silentServer(), silentServer()])
    const enqueue = spawnProc(["enqueue", "echo", "{}"], { ...env, DATABASE_URL: forEnqueue.url })
    const migrate = spawnProc(["migrate"], { ...env, DATABASE_URL: forMigrate.url })
    await within("enqueue to connect", 20_000, forEnqueue.connected)
    await within("migrate to connect", 20_000, forMigrate.connected)
    enqueue.child.kill("SIGTERM")
    migrate.child.kill("SIGINT")
    expect(await enqueue.exitWithin(10_000)).toBe(143)
    expect(await migrate.exitWithin(10_000)).toBe(130)
    expect(enqueue.stdout.filter((l) => l !== "")).toEqual([])
    expect(enqueue.stderr.filter((l) => l.startsWith("taskfiber:"))).toEqual(["taskfiber: enqueue interrupted by SIGTERM before it finished"])
    expect(migrate.stderr.filter((l) => l.startsWith("taskfiber:"))).toEqual(["taskfiber: migrate interrupted by SIGINT before it finished"])
    expect(migrate.stdout.join("\n")).not.toMatch(/schema up to date/)
  }, 60_000)
})

describe("npm start", () => {
  it("Ctrl-C (SIGINT to the process group) shuts down gracefully: npm exits 0, node is gone", async () => {
    const npm = npmStart(env)
    await npm.waitForStdout(/^taskfiber: running jobs /, 45_000)
    process.kill(-npm.child.pid!, "SIGINT")
    expect(await npm.exitWithin(20_000)).toBe(0)
    expect(npm.stderr.join("\n")).not.toMatch(/second SIGINT/)
    expect(groupAlive(npm.child.pid!)).toBe(false)
  }, 60_000)

  it("a second Ctrl-C after the shutdown began exits at once (130)", async () => {
    const npm = npmStart({ ...env, SHUTDOWN_GRACE: "60 seconds" })
    await npm.waitForStdout(/^taskfiber: running jobs /, 45_000)
    const enqueue = spawnProc(["enqueue", "sleep", "{\"ms\":60000}"], env)
    expect(await enqueue.exitWithin(30_000), enqueue.output()).toBe(0)
    const id = enqueue.stdout[0]!
    expect(id).toMatch(uuid)
    await npm.waitForLog("sleep: started", { taskId: id })

    const first = Date.now()
    process.kill(-npm.child.pid!, "SIGINT")
    await npm.waitForLog("shutting down: waiting for running jobs", {})
    await pastEchoWindow(first)
    const t0 = Date.now()
    process.kill(-npm.child.pid!, "SIGINT")
    expect(await npm.exitWithin(10_000)).toBe(130)
    expect(Date.now() - t0).toBeLessThan(5_000)
    expect(npm.stderr.join("\n")).toMatch(/taskfiber: second SIGINT: exiting at once/)
    expect(groupAlive(npm.child.pid!)).toBe(false)
  }, 60_000)
})
