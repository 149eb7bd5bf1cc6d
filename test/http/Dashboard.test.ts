/**
 * The web dashboard in a real browser (Debian's chromium through playwright-core)
 * against a real runtime and database: the page loads with no console errors,
 * a task enqueued through the API shows up running in the recent tasks, its page
 * cancels it, and the status turns cancelled without a reload; a dead letter is
 * replayed, a failed task retried, a queue paused and resumed from the page, the
 * token asked once. Takes a screenshot (docs/dashboard.png with UPDATE_SCREENSHOT=1).
 */
import { tmpdir } from "node:os"
import { existsSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Exit, Layer, Schema, Scope } from "effect"
import { chromium, type Browser } from "playwright-core"
import * as Job from "../../src/runtime/Job.ts"
import * as Taskfiber from "../../src/Taskfiber.ts"
import { freePort } from "../support/freePort.ts"
import * as Runtime from "../support/Runtime.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

// The README's screenshot is rewritten with UPDATE_SCREENSHOT=1; other runs write
// theirs to the temporary folder, leaving the committed one as it is.
const screenshotPath = process.env.UPDATE_SCREENSHOT === "1" ? "docs/dashboard.png" : `${tmpdir()}/taskfiber-dashboard.png`

const queue = "dashboard"
// Held until cancelled: the task stays running while the test looks at it.
const gate = Deferred.makeUnsafe<void>()
const Wait = Job.define({ name: "wait", queue, payload: Schema.Struct({}), run: () => Deferred.await(gate) })
const Greet = Job.define({ name: "greet", queue, otherQueues: ["dashboard-other"], payload: Schema.Struct({ name: Schema.String }), run: ({ name }) => Effect.succeed(`hi ${name}`) })
const Refuse = Job.define({ name: "refuse", queue, payload: Schema.Struct({}), maxAttempts: 1, run: () => Effect.fail(new Error("no")) })
const jobs = [Wait, Greet, Refuse]

const executablePath = "/usr/bin/chromium"

const post = (port: number, path: string, body: unknown, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) })
    return { status: r.status, body: await r.json() as any }
  })

/**
 * A runtime with its HTTP server on a free loopback port (settings from `env`
 * over the process's), and a chromium page that records its console errors and
 * answers every prompt with `answer`.
 */
const dashboard = (options: { readonly env?: Record<string, string>; readonly answer: string }) =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const env = { ...process.env, ...options.env } as Record<string, string>
    yield* Layer.buildWithScope(Taskfiber.layerWithoutDatabase({ jobs, config: Runtime.testConfig(), kafka: false, http: { port, host: "127.0.0.1" } }), scope)
      .pipe(Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))
    const browser: Browser = yield* Effect.acquireRelease(
      Effect.promise(() => chromium.launch({ executablePath, args: ["--headless", "--no-sandbox"] })),
      (b) => Effect.promise(() => b.close())
    )
    const page = yield* Effect.promise(() => browser.newPage({ viewport: { width: 1400, height: 1100 } }))
    const consoleErrors: Array<string> = []
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text())
    })
    page.on("pageerror", (e) => consoleErrors.push(e.message))
    const prompts: Array<string> = []
    page.on("dialog", (d) => {
      prompts.push(d.type())
      void d.accept(options.answer)
    })
    return { port, page, consoleErrors, prompts }
  })

// Page predicates are strings: they run in the browser, and this project's types have no DOM.
const ui = <A>(f: () => Promise<A>) => Effect.promise(f)

describe.skipIf(!existsSync(executablePath))("Dashboard", () => {
  it.layer(TestDatabase.layer(), { timeout: 120_000, excludeTestServices: true })("on a test database", (it) => {
    it.effect("serves its assets with their content types", () =>
      Effect.gen(function*() {
        const port = yield* Effect.promise(freePort)
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        yield* Layer.buildWithScope(Taskfiber.layerWithoutDatabase({ jobs, config: Runtime.testConfig(), kafka: false, http: { port, host: "127.0.0.1" } }), scope)
        for (
          const [path, type] of [
            ["/", "text/html"],
            ["/dashboard/app.js", "text/javascript"],
            ["/dashboard/style.css", "text/css"],
            ["/dashboard/uplot.js", "text/javascript"],
            ["/dashboard/uplot.css", "text/css"]
          ]
        ) {
          const r = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}${path}`))
          expect(r.status, path).toBe(200)
          expect(r.headers.get("content-type"), path).toMatch(new RegExp(`^${type}`))
          expect((yield* Effect.promise(() => r.text())).length, path).toBeGreaterThan(100)
        }
      }).pipe(Effect.scoped))

    it.effect("shows a running task live, cancels it from its page", () =>
      Effect.gen(function*() {
        // No token is configured and the server is on loopback: the empty answer works.
        const { consoleErrors, page, port, prompts } = yield* dashboard({ answer: "" })

        yield* ui(() => page.goto(`http://127.0.0.1:${port}/`))
        yield* ui(() => page.waitForFunction(`["HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL"].includes(document.getElementById("health-status").textContent)`))
        // The chart draws rates between samples: let the page take its first one before any run.
        yield* ui(() => page.waitForFunction(`document.getElementById("updated").textContent !== ""`))

        for (const name of ["ada", "grace", "edsger"]) expect((yield* post(port, "/tasks", { type: "greet", payload: { name } })).status).toBe(201)
        expect((yield* post(port, "/tasks", { type: "refuse", payload: {} })).status).toBe(201)
        const created = yield* post(port, "/tasks", { type: "wait", payload: {} })
        expect(created.status).toBe(201)
        const id: string = created.body.id

        const running = `#recent-tasks tr[data-task-id="${id}"] [data-status="running"]`
        yield* ui(() => page.waitForSelector(running, { timeout: 30_000 }))
        expect(yield* ui(() => page.textContent(`#recent-tasks tr[data-task-id="${id}"]`))).toContain("wait")
        // The queue appears in the queues panel, and run times by type once they finished.
        yield* ui(() => page.waitForSelector(`#queues tr[data-queue="${queue}"]`))
        yield* ui(() => page.waitForSelector(`#run-times tr[data-type="greet"]`))

        yield* ui(() => page.click(`#recent-tasks tr[data-task-id="${id}"] a`))
        yield* ui(() => page.waitForSelector(`#task-status [data-status="running"]`))
        expect(yield* ui(() => page.textContent("#task-id"))).toBe(id)
        expect(yield* ui(() => page.isHidden("#overview"))).toBe(true)
        expect(yield* ui(() => page.textContent("#task-events"))).toContain("queued → running")

        yield* ui(() => page.click("#cancel-button"))
        yield* ui(() => page.waitForSelector(`#task-status [data-status="cancelled"]`, { timeout: 30_000 }))
        yield* ui(() => page.waitForFunction(`document.getElementById("task-events").textContent.includes("running → cancelled")`))
        expect(yield* ui(() => page.isDisabled("#cancel-button"))).toBe(true)
        expect(prompts).toEqual(["prompt"])

        // Back on the overview: the cancel shows in the list, and the chart has its runs.
        yield* ui(() => page.click("a[href='#/']"))
        yield* ui(() => page.waitForSelector(`#recent-tasks tr[data-task-id="${id}"] [data-status="cancelled"]`))
        expect(yield* ui(() => page.isHidden("#task-page"))).toBe(true)
        yield* ui(() => page.waitForFunction(`document.getElementById("error-rate").textContent !== "–"`, null, { timeout: 30_000 }))
        expect(yield* ui(() => page.textContent("#error-rate"))).toMatch(/%/)
        yield* ui(() => page.waitForSelector("#throughput-chart .uplot"))
        yield* ui(() => page.screenshot({ path: screenshotPath, fullPage: true }))

        expect(consoleErrors).toEqual([])
      }).pipe(Effect.scoped), { timeout: 120_000 })

    it.effect("retries, replays, pauses and resumes from the page, with the token asked once", () =>
      Effect.gen(function*() {
        const { consoleErrors, page, port, prompts } = yield* dashboard({ env: { ADMIN_TOKEN: "s3cret" }, answer: "s3cret" })
        const auth = { authorization: "Bearer s3cret" }
        yield* ui(() => page.goto(`http://127.0.0.1:${port}/`))
        for (const name of ["ada", "grace"]) expect((yield* post(port, "/tasks", { type: "greet", payload: { name } }, auth)).status).toBe(201)
        const refused = yield* post(port, "/tasks", { type: "refuse", payload: {} }, auth)
        expect(refused.status).toBe(201)
        const id: string = refused.body.id

        // Its dead letter in the recent failures; replayed from there, it runs (and fails) again.
        const letterRow = `#failures tr:has(a[href="#/tasks/${id}"])`
        yield* ui(() => page.waitForSelector(`${letterRow} button[data-action="replay"]`, { timeout: 30_000 }))
        expect(yield* ui(() => page.textContent(letterRow))).toContain("refuse")
        yield* ui(() => page.click(`${letterRow} button[data-action="replay"]`))
        yield* ui(() => page.waitForFunction(`document.getElementById("failures-result").textContent.startsWith("replayed: task ${id}")`))
        yield* ui(() => page.waitForSelector(`#failures tr:has(a[href="#/tasks/${id}"]) .muted:text-matches("^replayed")`, { timeout: 30_000 }))

        // On its page, once failed again: Retry puts it back in the queue.
        yield* ui(() => page.click(`${letterRow} a`))
        yield* ui(() => page.waitForSelector(`#task-status [data-status="failed"]`, { timeout: 30_000 }))
        yield* ui(() => page.waitForSelector("#retry-button:not([disabled])"))
        const requeued = (text: string | null) => (text?.match(/failed → queued/g) ?? []).length
        const before = requeued(yield* ui(() => page.textContent("#task-events")))
        yield* ui(() => page.click("#retry-button"))
        yield* ui(() => page.waitForFunction(`document.getElementById("action-result").textContent.startsWith("queued again")`))
        yield* ui(() => page.waitForFunction(`(document.getElementById("task-events").textContent.match(/failed → queued/g) || []).length === ${before + 1}`))

        // Pause its queue: a task enqueued meanwhile waits while another queue flows;
        // resume: it runs.
        yield* ui(() => page.click("a[href='#/']"))
        const queueRow = `#queues tr[data-queue="${queue}"]`
        // A redraw keeps the button while its row's counts change (a click is never
        // lost to a poll): a task due tomorrow adds to the queue's waiting ones.
        const pauseButton = `${queueRow} button[data-action="pause"]`
        yield* ui(() => page.waitForSelector(pauseButton))
        const waitingBefore = yield* ui(() => page.textContent(`${queueRow} td:nth-child(3)`))
        yield* ui(() => page.evaluate(`window.pauseButton = document.querySelector('${pauseButton}')`))
        const tomorrow = new Date(Date.now() + 86_400_000).toISOString()
        expect((yield* post(port, "/tasks", { type: "greet", payload: { name: "later" }, runAt: tomorrow }, auth)).status).toBe(201)
        yield* ui(() => page.waitForFunction(`document.querySelector('${queueRow} td:nth-child(3)').textContent === "${Number(waitingBefore) + 1}"`))
        expect(yield* ui(() => page.evaluate(`window.pauseButton.isConnected && window.pauseButton === document.querySelector('${pauseButton}')`))).toBe(true)
        yield* ui(() => page.click(pauseButton))
        yield* ui(() => page.waitForSelector(`${queueRow}[data-paused="true"]`))
        expect(yield* ui(() => page.textContent(queueRow))).toContain("paused from the dashboard")
        const waiting = yield* post(port, "/tasks", { type: "greet", payload: { name: "edsger" } }, auth)
        expect(waiting.status).toBe(201)
        const waitingRow = `#recent-tasks tr[data-task-id="${waiting.body.id}"]`
        yield* ui(() => page.waitForSelector(`${waitingRow} [data-status="queued"]`))
        // Claimed by a statement that began after the paused queue's task was enqueued:
        // once it has run, that claim has passed the paused task over.
        const flowing = yield* post(port, "/tasks", { type: "greet", payload: { name: "barbara" }, queue: "dashboard-other" }, auth)
        expect(flowing.status).toBe(201)
        yield* ui(() => page.waitForSelector(`#recent-tasks tr[data-task-id="${flowing.body.id}"] [data-status="succeeded"]`, { timeout: 30_000 }))
        const held = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/tasks/${waiting.body.id}`).then((r) => r.json() as Promise<any>))
        expect(held.task).toMatchObject({ status: "queued", attempt: 0 })
        yield* ui(() => page.waitForSelector(`${queueRow} button[data-action="resume"]`))
        yield* ui(() => page.click(`${queueRow} button[data-action="resume"]`))
        yield* ui(() => page.waitForSelector(`${queueRow}[data-paused="false"]`))
        yield* ui(() => page.waitForSelector(`${waitingRow} [data-status="succeeded"]`, { timeout: 30_000 }))

        // The run times by type carry a p95 from the histogram's buckets.
        yield* ui(() => page.waitForFunction(`/^\\d+ ms$|^\\d+\\.\\d s$/.test((document.querySelector('#run-times tr[data-type="greet"] .p95') || {}).textContent || "")`))
        expect(prompts).toEqual(["prompt"])
        expect(consoleErrors).toEqual([])
      }).pipe(Effect.scoped), { timeout: 120_000 })

    it.effect("asks once for the token when reads need it, and lists with it", () =>
      Effect.gen(function*() {
        const { page, port, prompts } = yield* dashboard({ env: { ADMIN_TOKEN: "s3cret", ADMIN_READ_TOKEN_REQUIRED: "true" }, answer: "s3cret" })
        const created = yield* post(port, "/tasks", { type: "greet", payload: { name: "ada" } }, { authorization: "Bearer s3cret" })
        expect(created.status).toBe(201)
        yield* ui(() => page.goto(`http://127.0.0.1:${port}/`))
        yield* ui(() => page.waitForSelector(`#recent-tasks tr[data-task-id="${created.body.id}"]`))
        yield* ui(() => page.waitForSelector(`#queues tr[data-queue="${queue}"]`))
        expect(prompts).toEqual(["prompt"])
      }).pipe(Effect.scoped), { timeout: 60_000 })
  })
})
