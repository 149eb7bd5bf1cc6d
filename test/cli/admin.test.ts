/**
 * The operator's commands as real processes against a test database: `list`,
 * `cancel`, `retry`, `dlq list`, `dlq replay` (one, and `--all` with its progress),
 * `queues` — the output, the exit code, the JSON shape, and a case each that is
 * not possible. The tasks they act on are made here through the store, as a
 * worker would leave them.
 */
import { Effect, Layer, Redacted } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import * as Database from "../../src/store/Database.ts"
import * as DeadLetters from "../../src/store/DeadLetters.ts"
import * as PgTaskStore from "../../src/store/PgTaskStore.ts"
import { TaskStore } from "../../src/store/TaskStore.ts"
import { childDatabase, processes } from "../support/Cli.ts"

const { run, killAll } = processes()
const env = childDatabase(killAll)
afterAll(killAll)

/** Runs `effect` on the children's database with the store and the dead letters. */
const onDatabase = <A, E>(effect: Effect.Effect<A, E, TaskStore | DeadLetters.DeadLetters>) =>
  Effect.runPromise(effect.pipe(
    Effect.provide(Layer.mergeAll(PgTaskStore.layer, DeadLetters.layer).pipe(
      Layer.provideMerge(Database.layerUrl(Redacted.make(env.DATABASE_URL!), { poolMax: 2, poolMin: 0 }))
    ))
  ))

/** The children's environment without LOG_LEVEL: the commands are quiet, stderr holds only what they tell. */
const quiet = () => {
  const e = { ...env }
  delete e.LOG_LEVEL
  return e
}

const boom = { tag: "Boom", message: "boom: the mail server said no", classification: "permanent" } as const

/** `n` tasks of `type` in `queue`, failed as a worker fails them; their ids. */
const failedTasks = (type: string, queue: string, n = 1) =>
  onDatabase(Effect.gen(function*() {
    const store = yield* TaskStore
    yield* store.enqueueMany(Array.from({ length: n }, () => ({ type, queue, maxAttempts: 1 })))
    const claimed = yield* store.claim({ workerId: "w", queues: [queue], limit: n, leaseMs: 60_000 })
    for (const c of claimed) yield* store.fail("w", c, boom)
    return claimed.map((c) => c.id)
  }))

const enqueued = (type: string, queue: string, n: number, priority = 0) =>
  onDatabase(Effect.flatMap(TaskStore, (s) => s.enqueueMany(Array.from({ length: n }, () => ({ type, queue, priority }))))).then((rs) =>
    rs.map((r) => r.id).sort()
  )

describe("the operator's commands", () => {
  it("list: a table with the next page's command, --json, filters; a bad flag is one line and exit 1", async () => {
    const ids = await enqueued("echo", "cli-list", 3, 7)
    const all = await run(["list", "--queue", "cli-list"], quiet())
    expect(all.code, all.proc.output()).toBe(0)
    expect(all.stdout[0]).toMatch(/^ID\s+TYPE\s+QUEUE\s+STATUS\s+ATTEMPT\s+PRIORITY\s+UPDATED$/)
    expect(all.stdout.slice(1).map((l) => l.split(/\s+/).slice(0, 6))).toEqual(ids.map((id) => [id, "echo", "cli-list", "queued", "0/25", "7"]))
    expect(all.stdout.slice(1).every((l) => /\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(l))).toBe(true)
    expect(all.stderr).toBe("")

    const first = await run(["list", "--queue", "cli-list", "--limit", "2"], quiet())
    expect(first.stdout).toHaveLength(4)
    const more = first.stdout[3]!
    expect(more).toMatch(/^more: taskfiber list --queue cli-list --limit 2 --cursor \S+$/)
    const second = await run(more.replace(/^more: taskfiber /, "").split(" "), quiet())
    expect(second.code, second.proc.output()).toBe(0)
    expect(second.stdout.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([ids[2]])

    const json = await run(["list", "--queue", "cli-list", "--limit", "2", "--json"], quiet())
    expect(json.stdout).toHaveLength(1)
    const page = JSON.parse(json.stdout[0]!)
    expect(Object.keys(page)).toEqual(["tasks", "next_cursor"])
    expect(page.next_cursor).toEqual(expect.any(String))
    expect(Object.keys(page.tasks[0])).toEqual(["id", "type", "queue", "status", "attempt", "max_attempts", "priority", "run_at", "created_at", "updated_at", "last_error"])
    expect(page.tasks.map((t: { id: string }) => t.id)).toEqual(ids.slice(0, 2))

    expect((await run(["list", "--queue", "cli-list", "--status", "failed"], quiet())).stdout).toEqual(["no tasks"])
    const badCursor = await run(["list", "--cursor", "garbage"], quiet())
    expect(badCursor.code).toBe(1)
    expect(badCursor.stderr).toBe('taskfiber: the cursor "garbage" is not one a page gave: pass the previous page\'s cursor as it came')
    expect(JSON.parse((await run(["list", "--type", "nothing-of-this", "--json"], quiet())).stdout[0]!)).toEqual({ tasks: [], next_cursor: null })

    const badLimit = await run(["list", "--limit", "0"], quiet())
    expect(badLimit.code).toBe(1)
    expect(badLimit.stderr.trim()).toBe("taskfiber: --limit: 0 is not between 1 and 500")
    const badStatus = await run(["list", "--status", "stuck"], quiet())
    expect(badStatus.code).toBe(1)
    expect(badStatus.stdout).toEqual([])
    expect(badStatus.stderr.split("\n")[0]).toMatch(/^taskfiber: .*stuck/)
  }, 60_000)

  it("cancel: one line with the previous status; a final task or an unknown id is one line on stderr and exit 1", async () => {
    const [id] = await enqueued("echo", "cli-cancel", 1)
    const r = await run(["cancel", id!], quiet())
    expect(r.code, r.proc.output()).toBe(0)
    expect(r.stdout).toEqual([`cancelled ${id} (was queued)`])
    const again = await run(["cancel", id!], quiet())
    expect(again.code).toBe(1)
    expect(again.stdout).toEqual([])
    expect(again.stderr.trim()).toBe(`taskfiber: task ${id} is cancelled already: nothing to cancel`)
    const missing = crypto.randomUUID()
    const unknown = await run(["cancel", missing], quiet())
    expect(unknown.code).toBe(1)
    expect(unknown.stderr.trim()).toBe(`taskfiber: no task with id ${missing}`)
  }, 60_000)

  it("retry: a failed task queued again; a task that is not failed says its status, exit 1", async () => {
    const [id] = await failedTasks("echo", "cli-retry")
    const r = await run(["retry", id!], quiet())
    expect(r.code, r.proc.output()).toBe(0)
    expect(r.stdout).toEqual([`queued ${id} again (attempts from 0 of 1)`])
    const again = await run(["retry", id!], quiet())
    expect(again.code).toBe(1)
    expect(again.stderr.trim()).toBe(`taskfiber: task ${id} is queued, not failed: only a failed task can be retried`)
    expect((await run(["retry", "not-an-id"], quiet())).stderr.trim()).toBe("taskfiber: no task with id not-an-id")
  }, 60_000)

  it("dlq list and dlq replay: failed tasks and Kafka input, newest first; one replayed; a Kafka letter cannot be", async () => {
    const [failed] = await failedTasks("cli-dlq", "cli-dlq-q")
    await onDatabase(Effect.flatMap(DeadLetters.DeadLetters, (d) =>
      d.record([{ source: "kafka", type: "cli-dlq", reason: "payload is not JSON", topic: "tasks", partition: 3, offset: "12", timestamp: "5" }])))
    const table = await run(["dlq", "list", "--type", "cli-dlq"], quiet())
    expect(table.code, table.proc.output()).toBe(0)
    expect(table.stdout[0]).toMatch(/^ID\s+SOURCE\s+TYPE\s+TASK\s+CREATED\s+REPLAYED\s+REASON$/)
    expect(table.stdout[1]).toMatch(/^\S+\s+kafka\s+cli-dlq\s+tasks\[3\]@12\s+\S+Z\s+-\s+payload is not JSON$/)
    expect(table.stdout[2]).toMatch(new RegExp(`^\\S+\\s+task\\s+cli-dlq\\s+${failed}\\s+\\S+Z\\s+-\\s+boom: the mail server said no$`))

    const json = JSON.parse((await run(["dlq", "list", "--type", "cli-dlq", "--json"], quiet())).stdout[0]!)
    expect(Object.keys(json)).toEqual(["dead_letters", "next_cursor"])
    expect(json.next_cursor).toBeNull()
    const [kafka, task] = json.dead_letters
    expect(Object.keys(task)).toEqual(["id", "source", "task_id", "queue", "type", "reason", "error", "attempt", "created_at", "replayed_at", "kafka"])
    expect(task).toMatchObject({ source: "task", task_id: failed, queue: "cli-dlq-q", type: "cli-dlq", attempt: 1, replayed_at: null, error: boom, kafka: null })
    expect(kafka).toMatchObject({ source: "kafka", task_id: null, kafka: { topic: "tasks", partition: 3, offset: "12" } })

    const replayed = await run(["dlq", "replay", task.id], quiet())
    expect(replayed.code, replayed.proc.output()).toBe(0)
    expect(replayed.stdout).toEqual([`replayed dead letter ${task.id}: task ${failed} (cli-dlq) queued again`])
    const after = JSON.parse((await run(["dlq", "list", "--type", "cli-dlq", "--source", "task", "--json"], quiet())).stdout[0]!)
    expect(after.dead_letters[0].replayed_at).toEqual(expect.any(String))

    const notReplayable = await run(["dlq", "replay", kafka.id], quiet())
    expect(notReplayable.code).toBe(1)
    expect(notReplayable.stderr.trim()).toMatch(new RegExp(`^taskfiber: dead letter ${kafka.id} is input from kafka that never became a task`))
    const neither = await run(["dlq", "replay"], quiet())
    expect(neither.code).toBe(1)
    expect(neither.stderr.trim()).toBe("taskfiber: give a dead letter id, or --all to replay every failed task")
    const unknown = crypto.randomUUID()
    expect((await run(["dlq", "replay", unknown], quiet())).stderr.trim()).toBe(`taskfiber: no dead letter with id ${unknown}`)
  }, 60_000)

  it("dlq replay --all --type: progress lines on stderr (no terminal), the summary on stdout", async () => {
    const ids = await failedTasks("cli-bulk", "cli-bulk-q", 250)
    expect(ids).toHaveLength(250)
    const [other] = await failedTasks("cli-bulk-other", "cli-bulk-q")
    const r = await run(["dlq", "replay", "--all", "--type", "cli-bulk"], quiet())
    expect(r.code, r.proc.output()).toBe(0)
    expect(r.stdout).toEqual(["replayed 250 failed tasks of type cli-bulk"])
    expect(r.stderr.split("\n")).toEqual([
      "replaying: 0 of 250 done (0 replayed, 0 skipped)",
      "replaying: 100 of 250 done (100 replayed, 0 skipped)",
      "replaying: 200 of 250 done (200 replayed, 0 skipped)",
      "replaying: 250 of 250 done (250 replayed, 0 skipped)"
    ])
    const states = await onDatabase(Effect.flatMap(TaskStore, (s) => s.statuses([...ids, other!])))
    expect(states.filter((s) => s.status === "queued")).toHaveLength(250)
    expect(states.find((s) => s.id === other)?.status).toBe("failed")
    const none = await run(["dlq", "replay", "--all", "--type", "cli-bulk"], quiet())
    expect(none.stdout).toEqual(["replayed 0 failed tasks of type cli-bulk"])
    await onDatabase(Effect.flatMap(TaskStore, (s) => s.cancel([...ids, other!], "done")))
  }, 60_000)

  it("queues: the depth table and --json", async () => {
    await enqueued("echo", "cli-depth", 2, 3)
    await enqueued("echo", "cli-depth", 1, -1)
    await onDatabase(Effect.flatMap(TaskStore, (s) => s.claim({ workerId: "w", queues: ["cli-depth"], limit: 1, leaseMs: 60_000 })))
    const r = await run(["queues"], quiet())
    expect(r.code, r.proc.output()).toBe(0)
    expect(r.stdout[0]).toMatch(/^QUEUE\s+QUEUED\s+RETRYING\s+HIGH\s+NORMAL\s+LOW\s+READY\s+RUNNING\s+OLDEST READY\s+PAUSED$/)
    const row = r.stdout.find((l) => l.startsWith("cli-depth "))
    expect(row, r.proc.output()).toMatch(/^cli-depth\s+2\s+0\s+1\s+0\s+1\s+2\s+1\s+\d+(\.\d)?m?s\s+-$/)

    const json = JSON.parse((await run(["queues", "--json"], quiet())).stdout[0]!)
    const depth = json.queues.find((q: { queue: string }) => q.queue === "cli-depth")
    expect(depth).toMatchObject({ queue: "cli-depth", waiting: 2, ready: 2, running: 1, oldest_ready_ms: expect.any(Number) })
    expect(depth.depth).toEqual([
      { status: "queued", band: "high", tasks: 1, ready: 1 },
      { status: "queued", band: "low", tasks: 1, ready: 1 },
      { status: "running", band: "high", tasks: 1, ready: 0 }
    ])
    expect(Object.keys(depth)).toEqual(["queue", "waiting", "ready", "running", "oldest_ready_ms", "paused", "depth"])
    expect(depth.paused).toBeNull()

    // A paused queue says so, with its reason; an empty one is listed too.
    expect((await run(["pause", "cli-depth", "--reason", "deploy"], quiet())).code).toBe(0)
    expect((await run(["pause", "cli-idle"], quiet())).code).toBe(0)
    const paused = await run(["queues"], quiet())
    expect(paused.stdout.find((l) => l.startsWith("cli-depth "))).toMatch(/\spaused \(deploy\)$/)
    expect(paused.stdout.find((l) => l.startsWith("cli-idle "))).toMatch(/^cli-idle\s+0\s+0\s+0\s+0\s+0\s+0\s+0\s+-\s+paused$/)
    const pausedJson = JSON.parse((await run(["queues", "--json"], quiet())).stdout[0]!)
    expect(pausedJson.queues.find((q: { queue: string }) => q.queue === "cli-depth").paused).toEqual({ since: expect.any(String), reason: "deploy" })
  }, 60_000)
})
