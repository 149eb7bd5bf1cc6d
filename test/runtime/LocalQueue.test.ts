/**
 * The local queue's bookkeeping, without I/O: slots are never overfilled (all jobs
 * and per queue), starts follow claim order, a newer claim of a task replaces the
 * old one, and a cancellation remembered before its claim arrives stops the task.
 */
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import type { ClaimedTask } from "../../src/domain/Task.ts"
import { type HeldTask, LocalQueue } from "../../src/runtime/LocalQueue.ts"

const task = (id: string, queue = "a", revision = 1): ClaimedTask => ({
  id, queue, type: "t", payload: {}, attempt: 1, maxAttempts: 3, checkpoint: null,
  removeOnComplete: false, revision, startRecorded: true, recordStartFirst: false
})

const slots = { maxConcurrentJobs: 3, queueConcurrency: new Map([["b", 1]]) }

describe("LocalQueue", () => {
  it("starts in claim order up to the free slots, skipping a queue at its limit", () => {
    const local = new LocalQueue(slots)
    for (const [id, q] of [["1", "b"], ["2", "b"], ["3", "a"], ["4", "a"], ["5", "a"]] as const) local.hold(task(id, q))
    expect(local.takeStartable().map((e) => e.task.id)).toEqual(["1", "3", "4"])
    expect(local.handlers).toBe(3)
    expect(local.buffered).toBe(2)
    expect(local.freeSlots).toBe(0)
    expect(local.activeIn("b")).toBe(2)
  })

  it("a newer claim of a started task replaces it; the old run is superseded until it settles", () => {
    const local = new LocalQueue(slots)
    local.hold(task("x", "a", 1))
    const [first] = local.takeStartable()
    expect(local.hold(task("x", "a", 3))).toBe(first)
    const second = local.held.get("x")!
    expect(second.task.revision).toBe(3)
    expect(local.unsettled()).toEqual([second, first])
    local.handlerEnded(first!)
    local.settled(first!)
    expect(local.held.get("x")).toBe(second)
    expect(local.unsettled()).toEqual([second])
  })

  it("a buffered task claimed again is replaced without a run to stop", () => {
    const local = new LocalQueue(slots)
    local.hold(task("x"))
    expect(local.hold(task("x", "a", 3))).toBeUndefined()
    expect(local.buffered).toBe(1)
    expect(local.held.get("x")?.task.revision).toBe(3)
  })

  it("a task cancelled before its claim came back is never held", () => {
    const local = new LocalQueue(slots)
    local.rememberCancel("x")
    expect(local.hold(task("x"))).toBe("cancelled")
    expect(local.held.size).toBe(0)
    // Remembered once: a later claim (there is none for a cancelled task) would be held.
    expect(local.hold(task("x"))).toBeUndefined()
    expect(local.held.size).toBe(1)
  })

  it("the shutdown takes the buffer: those tasks are held no more", () => {
    const local = new LocalQueue(slots)
    for (const id of ["1", "2", "3", "4", "5"]) local.hold(task(id))
    const running = local.takeStartable()
    expect(local.takeBuffered().map((e) => e.task.id)).toEqual(["4", "5"])
    expect([...local.held.values()]).toEqual(running)
  })

  const Op = Schema.Struct({
    kind: Schema.Literals(["claim", "reclaim", "start", "end", "settle", "drop"]),
    pick: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 50 })),
    queue: Schema.Literals(["a", "b"])
  })

  it.prop(
    "under any sequence of claims, starts, ends, settlings and drops, no slot is overfilled and the counts agree",
    { ops: Schema.Array(Op).check(Schema.isMaxLength(80)) },
    ({ ops }) => {
      const local = new LocalQueue(slots)
      const all: Array<HeldTask> = []
      let next = 0
      const pickOf = <A>(xs: ReadonlyArray<A>, n: number) => (xs.length === 0 ? undefined : xs[n % xs.length])
      for (const op of ops) {
        if (op.kind === "claim") {
          const t = task(String(next++), op.queue)
          if (local.hold(t) !== "cancelled") all.push(local.held.get(t.id)!)
        } else if (op.kind === "reclaim") {
          const old = pickOf([...local.held.values()], op.pick)
          if (old) {
            const replaced = local.hold(task(old.task.id, old.task.queue, old.task.revision + 2))
            all.push(local.held.get(old.task.id)!)
            if (replaced !== undefined) expect(replaced).toBe(old)
          }
        } else if (op.kind === "start") {
          const started = local.takeStartable()
          for (const e of started) expect(e.phase).toBe("running")
          // With a slot free, only a queue at its limit keeps a task buffered.
          const waiting = all.filter((x) => x.phase === "buffered" && local.held.get(x.task.id) === x)
          expect(waiting.length).toBe(local.buffered)
          if (local.handlers < slots.maxConcurrentJobs) {
            for (const e of waiting) {
              expect(e.task.queue).toBe("b")
              expect(all.filter((x) => x.phase === "running" && x.task.queue === "b")).toHaveLength(1)
            }
          }
        } else if (op.kind === "end") {
          const e = pickOf(all.filter((x) => x.phase === "running"), op.pick)
          if (e) expect(local.handlerEnded(e)).toBe(true)
        } else if (op.kind === "settle") {
          const e = pickOf(all.filter((x) => x.phase === "settling"), op.pick)
          if (e) local.settled(e)
        } else {
          const e = pickOf(all.filter((x) => x.phase === "buffered"), op.pick)
          if (e) local.unbuffer(e)
        }
        const live = local.unsettled()
        const running = live.filter((e) => e.phase === "running")
        expect(local.handlers).toBe(running.length)
        expect(local.handlers).toBeLessThanOrEqual(slots.maxConcurrentJobs)
        expect(running.filter((e) => e.task.queue === "b").length).toBeLessThanOrEqual(1)
        expect(local.freeSlots).toBe(Math.max(0, slots.maxConcurrentJobs - local.handlers - local.buffered))
        for (const [id, e] of local.held) expect(e.task.id).toBe(id)
        for (const e of local.superseded) expect(local.held.get(e.task.id)).not.toBe(e)
      }
    }
  )
})
