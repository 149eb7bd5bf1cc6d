/**
 * Real `taskfiber` processes for the CLI tests: spawn one, await its output lines
 * and its exit, each with a bounded timeout (nothing is ordered by sleeping).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Exit, Scope } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as TestDatabase from "./TestDatabase.ts"

/** The repository's folder. */
export const root = fileURLToPath(new URL("../..", import.meta.url))
/** The binary, as a clone runs it. */
export const bin = join(root, "bin", "taskfiber.js")
/** A task id. */
export const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A child's environment. */
export type Env = Record<string, string | undefined>

/** One JSON log line (LOG_FORMAT=json): its named fields, then the annotations and the message's fields. */
export interface LogLine {
  readonly message: string
  readonly level: string
  readonly [field: string]: unknown
}

/** How to spawn a {@link Proc}. */
export interface ProcOptions {
  /** The program and its leading arguments; default `node bin/taskfiber.js`. */
  readonly command?: ReadonlyArray<string>
  /** In a process group of its own (`process.kill(-pid, signal)` reaches it all), as a terminal runs a foreground job. */
  readonly detached?: boolean
  /** The working folder; default the repository's. */
  readonly cwd?: string
}

/** A running `taskfiber` process (or `npm start`) whose output lines can be awaited. */
export class Proc {
  readonly child: ChildProcess
  readonly stdout: Array<string> = []
  readonly stderr: Array<string> = []
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** In a process group of its own. */
  readonly detached: boolean
  private waiters: Array<() => void> = []

  constructor(args: ReadonlyArray<string>, env: Env, options: ProcOptions = {}) {
    this.detached = options.detached ?? false
    const [program, ...leading] = options.command ?? [process.execPath, bin]
    this.child = spawn(program!, [...leading, ...args], {
      cwd: options.cwd ?? root,
      env: env as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
      detached: options.detached ?? false
    })
    const collect = (stream: NodeJS.ReadableStream, into: Array<string>) => {
      let partial = ""
      stream.setEncoding("utf8")
      stream.on("data", (chunk: string) => {
        const parts = (partial + chunk).split("\n")
        partial = parts.pop()!
        into.push(...parts)
        this.notify()
      })
      stream.on("end", () => {
        if (partial !== "") into.push(partial)
        this.notify()
      })
    }
    collect(this.child.stdout!, this.stdout)
    collect(this.child.stderr!, this.stderr)
    this.exited = new Promise((resolve) => {
      this.child.on("close", (code, signal) => {
        resolve({ code, signal })
        this.notify()
      })
    })
  }

  private notify() {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  output(): string {
    return `--- stdout ---\n${this.stdout.join("\n")}\n--- stderr ---\n${this.stderr.join("\n")}`
  }

  /** The JSON log lines (LOG_FORMAT=json, on stderr). */
  logs(): Array<LogLine> {
    return this.stderr.flatMap((line) => {
      if (!line.startsWith("{")) return []
      try {
        return [JSON.parse(line) as LogLine]
      } catch {
        return []
      }
    })
  }

  /** Resolves with the first value `find` returns (checked on every new line); bounded. */
  waitFor<A>(what: string, find: () => A | undefined, timeoutMs = 20_000): Promise<A> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.output()}`)), timeoutMs)
      const check = () => {
        const found = find()
        if (found !== undefined) {
          clearTimeout(timer)
          resolve(found)
        } else if (!this.running && this.child.stdout!.readableEnded && this.child.stderr!.readableEnded) {
          clearTimeout(timer)
          reject(new Error(`process exited while waiting for ${what}\n${this.output()}`))
        } else {
          this.waiters.push(check)
        }
      }
      check()
    })
  }

  waitForStdout(pattern: RegExp, timeoutMs?: number) {
    return this.waitFor(`stdout ${pattern}`, () => this.stdout.find((l) => pattern.test(l)), timeoutMs)
  }

  /** The log entry whose message is `message` and whose fields (data or annotations) include `fields`. */
  waitForLog(message: string, fields: Record<string, unknown>, timeoutMs?: number) {
    return this.waitFor(`log "${message}" ${JSON.stringify(fields)}`, () =>
      this.logs().find((l) => l.message === message && Object.entries(fields).every(([k, v]) => l[k] === v)), timeoutMs)
  }

  /** Exit code within `timeoutMs` (rejects if still running). */
  async exitWithin(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms\n${this.output()}`)), timeoutMs)
    })
    try {
      return (await Promise.race([this.exited, timeout])).code
    } finally {
      clearTimeout(timer)
    }
  }
}

/** The environment of the children: the test's, minus DATABASE_URL, plus `extra`. */
export const childEnv = (extra: Env): Env => {
  const env: Env = { ...process.env, LOG_FORMAT: "json", LOG_LEVEL: "info", SHUTDOWN_GRACE: "500 millis", HTTP_PORT: "0", ...extra }
  if (extra.DATABASE_URL === undefined) delete env.DATABASE_URL
  return env
}

/**
 * Resolves a second after `sentAt` (Date.now()). The binary takes a repeat of its
 * first signal within 500 ms for the echo of one Ctrl-C (the terminal signals the
 * process group and npm forwards it too), so a test of a genuinely second signal,
 * already ordered after the shutdown's start by a log line, also waits this window
 * out (with room for the child's event loop being late to the first).
 */
export const pastEchoWindow = (sentAt: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, sentAt + 1_000 - Date.now())))

/** What {@link processes}' `run` returns: the exit code and the output. */
export interface RunResult {
  readonly code: number | null
  /** Non-empty stdout lines. */
  readonly stdout: ReadonlyArray<string>
  readonly stderr: string
  readonly proc: Proc
}

/**
 * The processes of one test file: `spawnCli` starts one, `run` runs one to its end
 * (bounded), `killAll` (in `afterAll`) kills what is left, with its process group
 * when it has one of its own.
 */
export const processes = () => {
  const all: Array<Proc> = []
  const spawnCli = (args: ReadonlyArray<string>, env: Env, options?: ProcOptions): Proc => {
    const p = new Proc(args, env, options)
    all.push(p)
    return p
  }
  const run = async (args: ReadonlyArray<string>, env: Env, options?: ProcOptions): Promise<RunResult> => {
    const p = spawnCli(args, env, options)
    const code = await p.exitWithin(60_000)
    return { code, stdout: p.stdout.filter((l) => l !== ""), stderr: p.stderr.join("\n"), proc: p }
  }
  const killAll = async () => {
    for (const p of all) {
      if (!p.running) continue
      try {
        if (!p.detached) throw new Error("no group of its own")
        process.kill(-p.child.pid!, "SIGKILL")
      } catch {
        p.child.kill("SIGKILL")
      }
    }
    await Promise.all(all.map((p) => p.exited))
  }
  return { spawnCli, run, killAll }
}

/**
 * A test database for the children of one test file, made in its `beforeAll` and
 * dropped in its `afterAll` (after `before`: the file's processes killed). Returns
 * the children's environment (DATABASE_URL set), filled in by `beforeAll`.
 */
export const childDatabase = (before: () => Promise<void>): Env => {
  const scope = Scope.makeUnsafe()
  const env: Env = {}
  beforeAll(async () => {
    const name = await Effect.runPromise(Scope.provide(scope)(TestDatabase.scopedDatabase))
    Object.assign(env, childEnv({ DATABASE_URL: TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name) }))
  }, 60_000)
  afterAll(async () => {
    await before()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }, 60_000)
  return env
}
