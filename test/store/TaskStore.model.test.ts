/**
 * A model-based test of the store: random sequences of its operations — enqueue,
 * claims by three workers (one of an older deploy that knows fewer types), lease
 * renewal, progress, start records, complete / retry / fail / give up, release,
 * cancel, leases that expire, reaping, replay — run against the real SQL and, step
 * by step, against a pure model of the state machine (test/support/TaskModel.ts).
 * Workers keep every claim they got until they use it, so stale claims keep
 * trying their statements.
 *
 * After every step: each task is in the one state the model allows, with the
 * model's attempt, revision, progress and result; every statement was accepted
 * exactly when its claim still held its task (no stale claim is ever accepted, a
 * settled attempt never changes again); no task is lost or appears; each task's
 * history only grows, in order, one event per recorded move.
 *
 * Budget: MODEL_BUDGET_SECONDS (default 8 in the suite; `npm run test:model` runs
 * 300). A failure prints its seed and replay token: MODEL_SEED=<seed> runs that seed
 * again; MODEL_REPLAY=<token> replays the shrunk case.
 */
import { expect, it } from "@effect/vitest"
import { Data, Effect, Layer, Option, Schema } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import { SqlClient } from "effect/sql/SqlClient"
import * as TaskStore from "../../src/store/TaskStore.ts"
import * as PgTaskStore from "../../src/store/PgTaskStore.ts"
import * as M from "../support/TaskModel.ts"
import * as TestDatabase from "../support/TestDatabase.ts"

const Env = PgTaskStore.layer.pipe(Layer.provideMerge(TestDatabase.layer()))
const lease = 600_000
const boom = { tag: "Boom", message: "boom", classification: "transient" } as const
const budgetSeconds = Number(process.env.MODEL_BUDGET_SECONDS ?? 8)

/** The database disagreed with the model. */
class Disagreement extends Data.TaggedError("Disagreement")<{ readonly step: number; readonly command: M.Command; readonly message: string }> {}

const sorted = (xs: ReadonlyArray<string>) => [...xs].sort()
const same = (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => JSON.stringify(sorted(a)) === JSON.stringify(sorted(b))
const json = (v: unknown) => JSON.stringify(v ?? null)

let evaluation = 0
/** What the runs exercised, for the summary line: steps, and statements refused to stale claims. */
const seen = { steps: 0, claimed: 0, staleRefused: 0, reaped: 0, givenBack: 0, reclaimedBySameWorker: 0 }

/** Runs `commands` on a fresh queue; fails with the first disagreement. */
const run = (commands: ReadonlyArray<M.Command>) =>
  Effect.gen(function*() {
    const store = yield* TaskStore.TaskStore
    const sql = yield* SqlClient
    const n = evaluation++
    const queue = `model-${process.pid}-${n}`
    const workerId = (w: number) => `model-${n}-w${w}`
    const model = M.empty()
    const history = new Map<string, ReadonlyArray<string>>()
    let counter = 0

    const step = (index: number, c: M.Command) =>
      Effect.gen(function*() {
        const disagree = (message: string) => Effect.fail(new Disagreement({ step: index, command: c, message }))
        const accepted = (what: string, got: boolean, expected: boolean) => {
          if (!expected) seen.staleRefused++
          return got === expected ? Effect.void : disagree(`${what}: database ${got ? "accepted" : "refused"}, model ${expected ? "accepts" : "refuses"}`)
        }
        const reap = Effect.gen(function*() {
          const got = (yield* store.reapExpired(1_000)).filter((t) => t.queue === queue)
          const expected = model.tasks.filter((t) => t.status === "running" && t.leaseExpired)
          if (!same(got.map((t) => t.id), expected.map((t) => t.id))) {
            return yield* disagree(`reaped ${json(got.map((t) => t.id))}, model ${json(expected.map((t) => t.id))}`)
          }
          for (const t of expected) {
            seen.reaped++
            if (t.holder?.started !== true) seen.givenBack++
            M.reaped(t)
          }
          for (const t of got) {
            if (t.status !== M.find(model, t.id).status) return yield* disagree(`reaped ${t.id} to ${t.status}, model ${M.find(model, t.id).status}`)
          }
        })
        switch (c._tag) {
          case "Enqueue": {
            const { id } = yield* store.enqueue({ type: c.type, queue, priority: c.priority, maxAttempts: c.maxAttempts, removeOnComplete: c.remove })
            M.enqueued(model, id, c)
            return
          }
          case "Claim": {
            const open = M.claimable(model, c.worker)
            const got = yield* store.claimToRun({
              workerId: workerId(c.worker), queues: [queue], types: M.workerTypes[c.worker]!, limit: c.limit, leaseMs: lease, runNow: c.runNow
            })
            if (got.length !== Math.min(c.limit, open.length)) return yield* disagree(`claimed ${got.length} of ${open.length} claimable, limit ${c.limit}`)
            const ids = got.map((t) => t.id)
            if (!ids.every((id) => open.some((t) => t.id === id))) return yield* disagree(`claimed a task the model says is not claimable`)
            const lowest = Math.min(...open.filter((t) => ids.includes(t.id)).map((t) => t.priority))
            if (open.some((t) => !ids.includes(t.id) && t.priority > lowest)) return yield* disagree(`left a higher priority task unclaimed`)
            const before = new Map(got.map((t) => [t.id, M.find(model, t.id).returnedUnstarted]))
            seen.reclaimedBySameWorker += ids.filter((id) => model.claims[c.worker]!.some((cl) => cl.id === id)).length
            const tasks = M.claimed(model, c.worker, ids, c.runNow)
            seen.claimed += ids.length
            for (const [i, t] of got.entries()) {
              const m = tasks[i]!
              if (t.revision !== m.revision || t.attempt !== m.attempt) return yield* disagree(`claim of ${t.id}: revision/attempt ${t.revision}/${t.attempt}, model ${m.revision}/${m.attempt}`)
              if (t.startRecorded !== i < c.runNow) return yield* disagree(`claim of ${t.id}: startRecorded ${t.startRecorded}`)
              if (t.recordStartFirst !== (i >= c.runNow && before.get(t.id)! > 0)) return yield* disagree(`claim of ${t.id}: recordStartFirst ${t.recordStartFirst}`)
            }
            return
          }
          case "Heartbeat": {
            const claims = model.claims[c.worker]!.map((cl, i) => ({ ...cl, started: (c.started & (1 << i)) !== 0 }))
            const held = yield* store.extendLeases(workerId(c.worker), lease, claims)
            const holding = claims.filter((cl) => M.holds(model, c.worker, cl))
            if (!same(held, holding.map((cl) => cl.id))) return yield* disagree(`heartbeat held ${json(held)}, model ${json(holding)}`)
            for (const cl of holding) {
              const t = M.find(model, cl.id)
              t.leaseExpired = false
              if (cl.started) t.holder!.started = true
            }
            return
          }
          case "Progress": {
            const claim = M.pickClaim(model, c.worker, c.pick)
            if (claim === undefined) return
            const value = { n: ++counter }
            const ok = yield* store.recordProgress(workerId(c.worker), claim, { progress: value })
            const expected = M.holds(model, c.worker, claim)
            yield* accepted("progress", ok, expected)
            if (expected) M.find(model, claim.id).progress = value
            return
          }
          case "RecordStart": {
            const claim = M.pickClaim(model, c.worker, c.pick)
            if (claim === undefined) return
            const ok = yield* store.recordStart(workerId(c.worker), claim)
            const expected = M.holds(model, c.worker, claim)
            yield* accepted("start record", ok, expected)
            if (expected) M.find(model, claim.id).holder!.started = true
            return
          }
          case "Complete": {
            const picked = c.picks.map((p) => M.pickClaim(model, c.worker, p)).filter((cl) => cl !== undefined)
            const claims = picked.filter((cl, i) => picked.findIndex((o) => o.id === cl.id && o.revision === cl.revision) === i)
            if (claims.length === 0) return
            const items = claims.map((cl) => ({ ...cl, result: { by: cl.revision }, remove: M.find(model, cl.id).remove }))
            const done = yield* store.complete(workerId(c.worker), items)
            const expected = claims.filter((cl) => M.holds(model, c.worker, cl))
            const key = (cl: M.ModelClaim) => `${cl.id}:${cl.revision}`
            if (!same(done.map(key), expected.map(key))) return yield* disagree(`completed ${json(done)}, model ${json(expected)}`)
            for (const cl of expected) M.completed(model, cl, { by: cl.revision })
            for (const cl of claims) M.drop(model, c.worker, cl)
            return
          }
          case "Retry":
          case "Fail":
          case "CancelClaimed": {
            const claim = M.pickClaim(model, c.worker, c.pick)
            if (claim === undefined) return
            const expected = M.holds(model, c.worker, claim)
            const ok = c._tag === "Retry"
              ? Option.isSome(yield* store.retry(workerId(c.worker), claim, boom, 0))
              : c._tag === "Fail"
              ? Option.isSome(yield* store.fail(workerId(c.worker), claim, boom))
              : yield* store.cancelClaimed(workerId(c.worker), claim, "gave up")
            yield* accepted(c._tag, ok, expected)
            if (expected) {
              if (c._tag === "Retry") M.retried(model, claim)
              else if (c._tag === "Fail") M.failed(model, claim)
              else M.cancelled(M.find(model, claim.id))
            }
            M.drop(model, c.worker, claim)
            return
          }
          case "Release": {
            const picked = c.picks.map((p) => M.pickClaim(model, c.worker, p)).filter((cl) => cl !== undefined)
            const claims = picked.filter((cl, i) => picked.findIndex((o) => o.id === cl.id && o.revision === cl.revision) === i)
            if (claims.length === 0) return
            const ids = yield* store.release(workerId(c.worker), claims)
            const expected = claims.filter((cl) => M.holds(model, c.worker, cl))
            if (!same(ids, expected.map((cl) => cl.id))) return yield* disagree(`released ${json(ids)}, model ${json(expected)}`)
            for (const cl of expected) M.released(model, cl)
            for (const cl of claims) M.drop(model, c.worker, cl)
            return
          }
          case "Cancel": {
            const t = M.pickTask(model, c.task)
            if (t === undefined) return
            const rows = yield* store.cancel([t.id], "cancelled")
            const before = t.status
            const expected = before === "queued" || before === "retrying" || before === "running"
            yield* accepted("cancel", rows.length === 1, expected)
            if (expected) {
              if (rows[0]!.previousStatus !== before) return yield* disagree(`cancel: previous status ${rows[0]!.previousStatus}, model ${before}`)
              M.cancelled(t)
            }
            return
          }
          case "Expire":
          case "Stall": {
            const t = M.pickTask(model, c.task, (t) => t.status === "running")
            if (t === undefined) return
            yield* sql`update taskfiber.tasks set lease_expires_at = clock_timestamp() - interval '1 second'
                        where id = ${t.id}::uuid and status = 'running'`
            t.leaseExpired = true
            return c._tag === "Stall" ? yield* reap : undefined
          }
          case "Reap":
            return yield* reap
          case "Replay": {
            const t = M.pickTask(model, c.task)
            if (t === undefined) return
            const got = yield* store.replay(t.id)
            yield* accepted("replay", Option.isSome(got), t.status === "failed")
            if (t.status === "failed") M.replayed(t)
            return
          }
        }
      })

    /** The database's state of every task of the queue, against the model. */
    const check = (index: number, c: M.Command) =>
      Effect.gen(function*() {
        const disagree = (message: string) => Effect.fail(new Disagreement({ step: index, command: c, message }))
        const rows = yield* sql<{
          id: string; status: string; attempt: number; revision: number; progress: unknown; result: unknown
          returned_unstarted: number; handler_started: boolean
        }>`select id, status::text, attempt, revision, progress, result, returned_unstarted, handler_started
             from taskfiber.tasks where queue = ${queue}`
        const live = model.tasks.filter((t) => t.status !== "deleted")
        if (!same(rows.map((r) => r.id), live.map((t) => t.id))) return yield* disagree(`tasks in the database ${json(sorted(rows.map((r) => r.id)))}, model ${json(sorted(live.map((t) => t.id)))}`)
        for (const r of rows) {
          const t = M.find(model, r.id)
          const db = { status: r.status, attempt: r.attempt, revision: r.revision, progress: r.progress, returned: r.returned_unstarted }
          const m = { status: t.status, attempt: t.attempt, revision: t.revision, progress: t.progress, returned: t.returnedUnstarted }
          if (json(db) !== json(m)) return yield* disagree(`task ${r.id}: database ${json(db)}, model ${json(m)}`)
          if (t.status === "succeeded" && json(r.result) !== json(t.result)) return yield* disagree(`task ${r.id}: result ${json(r.result)}, model ${json(t.result)}`)
          if (t.status === "running" && r.handler_started !== t.holder!.started) return yield* disagree(`task ${r.id}: handler_started ${r.handler_started}`)
        }
        const events = yield* sql<{ task_id: string; seq: number; from_status: string | null; to_status: string }>`
          select e.task_id, e.seq, e.from_status::text, e.to_status::text from taskfiber.task_events e
            join taskfiber.tasks t on t.id = e.task_id where t.queue = ${queue} order by e.task_id, e.seq`
        for (const t of live) {
          const mine = events.filter((e) => e.task_id === t.id)
          const seen = mine.map((e) => `${e.seq}:${e.from_status}>${e.to_status}`)
          const before = history.get(t.id) ?? []
          if (json(seen.slice(0, before.length)) !== json(before)) return yield* disagree(`history of ${t.id} changed: ${json(before)} -> ${json(seen)}`)
          history.set(t.id, seen)
          for (let i = 1; i < mine.length; i++) {
            if (mine[i]!.seq <= mine[i - 1]!.seq) return yield* disagree(`history of ${t.id} out of order`)
            if (mine[i]!.seq === mine[i - 1]!.seq + 1 && mine[i]!.from_status !== mine[i - 1]!.to_status) {
              return yield* disagree(`history of ${t.id}: ${json(seen)} does not chain`)
            }
          }
          const last = mine.at(-1)
          if (last !== undefined && last.seq > t.revision) return yield* disagree(`history of ${t.id} ahead of its revision`)
          // A kept task records every move; one that leaves on success skips its happy path.
          if (!t.remove && (mine.length !== t.revision || last?.to_status !== t.status)) {
            return yield* disagree(`history of ${t.id}: ${json(seen)}, model revision ${t.revision} status ${t.status}`)
          }
        }
      })

    yield* Effect.gen(function*() {
      for (const [index, c] of commands.entries()) {
        seen.steps++
        yield* step(index, c)
        yield* check(index, c)
      }
    }).pipe(Effect.ensuring(Effect.orDie(sql`delete from taskfiber.tasks where queue = ${queue}`)))
    return true
  })

// One operation, by M.weights: a number picks the kind, the kind's schema its fields.
const kinds = Object.entries(M.weights) as ReadonlyArray<[keyof typeof M.commands, number]>
const total = kinds.reduce((sum, [, w]) => sum + w, 0)
const operation: Arbitrary.Arbitrary<M.Command> = Arbitrary.flatMap(
  Arbitrary.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: total - 1 }))),
  (n) => {
    let left = n
    for (const [kind, w] of kinds) {
      if (left < w) return Arbitrary.schema(M.commands[kind]) as Arbitrary.Arbitrary<M.Command>
      left -= w
    }
    return Arbitrary.schema(M.commands.Reap)
  }
)
const commands = Arbitrary.array(operation, { minLength: 15, maxLength: 60 })

it.layer(Env, { timeout: (budgetSeconds + 240) * 1000 })("TaskStore against the model", (it) => {
  it.effect(`random operations by three workers agree with the model (budget ${budgetSeconds} s)`, () =>
    Effect.gen(function*() {
      const replay = process.env.MODEL_REPLAY
      const fixed = process.env.MODEL_SEED
      const start = Date.now()
      const base = fixed ?? `${Date.now()}`
      let round = 0
      let cases = 0
      do {
        const seed = fixed ?? `${base}-${round++}`
        const result = yield* Arbitrary.checkEffect(commands, run, { runs: 50, size: 60, seed, maxShrinks: 300, ...(replay ? { replay } : {}) })
        if (result._tag !== "Passed") {
          const message = `model disagreement (seed ${seed}; rerun with MODEL_SEED=${seed})\n${Arbitrary.formatCheckFailure(result)}`
          console.error(message)
          expect.fail(message)
        }
        cases += result.runs
      } while (!fixed && !process.env.MODEL_REPLAY && Date.now() - start < budgetSeconds * 1000)
      console.log(
        `model: ${cases} sequences, ${seen.steps} operations agreed (${seen.claimed} tasks claimed, ${seen.staleRefused} statements ` +
          `refused to claims that had lost their task, ${seen.reaped} reaped of which ${seen.givenBack} handed back unstarted, ` +
          `${seen.reclaimedBySameWorker} claimed again by a worker holding a stale claim of them; ` +
          `seeds ${base}-0..${round - 1}, ${Math.round((Date.now() - start) / 1000)} s)`
      )
    }), (budgetSeconds + 240) * 1000)
})
