/**
 * The tasks this instance holds, and the job slots they use: plain synchronous
 * state, shared by the dispatcher (which claims into it and starts from it), the
 * runner's hooks (which free slots), the heartbeat, the canceller and the
 * shutdown. Synchronous on purpose: a choice made here cannot be interleaved, so
 * two fibers starting tasks at once never overfill the slots.
 *
 * A held task is in one of three phases: `buffered` (claimed ahead of a free slot,
 * PREFETCH), `running` (its handler holds a slot) or `settling` (the handler ended,
 * the outcome is being written; its slot is already free). Every entry is one
 * claim: a newer claim of the same task (this instance's own run stalled past its
 * lease, was reaped, and the task was claimed here again) replaces it, and the old
 * run is kept aside as superseded until it settles.
 */
import type { Deferred } from "effect"
import type { ClaimedTask } from "../domain/Task.ts"
import type { RunControl } from "./TaskRunner.ts"

/** How many cancelled task ids are remembered (see {@link LocalQueue.rememberCancel}). */
const recentCancelsKept = 1024

/** One claim held by this instance. */
export interface HeldTask extends RunControl {
  readonly task: ClaimedTask
  phase: "buffered" | "running" | "settling"
  /**
   * Done once the task's outcome is written (or abandoned). Made only when the
   * shutdown waits for the task: a Deferred per task cost an allocation on every run.
   */
  settled: Deferred.Deferred<void> | undefined
  /** `performance.now()` when its handler started; 0 until then (a run's duration, for its Settled event). */
  startedAt: number
}

/** The slots: all jobs at once, and per-queue limits (QUEUE_CONCURRENCY). */
export interface Slots {
  readonly maxConcurrentJobs: number
  readonly queueConcurrency: ReadonlyMap<string, number>
}

/** The held tasks of one supervisor. */
export class LocalQueue {
  /** The current claim of each task held here, by task id. */
  readonly held = new Map<string, HeldTask>()
  /** Runs replaced by a newer claim of their task, not settled yet (the shutdown waits for them too). */
  readonly superseded = new Set<HeldTask>()
  /** Buffered tasks in claim order (highest effective priority first). */
  readonly #buffer: Array<HeldTask> = []
  readonly #handlersIn = new Map<string, number>()
  // A claim that committed just before a cancellation may still be on its way
  // back, and must not start its task.
  readonly #recentCancels = new Set<string>()
  readonly #slots: Slots
  /** Handlers running (each holds a slot). */
  handlers = 0

  constructor(slots: Slots) {
    this.#slots = slots
  }

  /** Tasks claimed and not started yet. */
  get buffered(): number {
    return this.#buffer.length
  }

  /** Slots that no running or buffered task will take. */
  get freeSlots(): number {
    return Math.max(0, this.#slots.maxConcurrentJobs - this.handlers - this.#buffer.length)
  }

  /** Buffered plus running in `queue` (settling tasks hold no slot). */
  activeIn(queue: string): number {
    let n = this.#handlersIn.get(queue) ?? 0
    for (const entry of this.#buffer) if (entry.task.queue === queue) n++
    return n
  }

  /**
   * Holds a claimed task, buffered. Returns the started run this claim replaces (the
   * caller stops it), `undefined` when it replaces none, or `"cancelled"` when the
   * task was cancelled after its claim committed: it is not held and never runs
   * (cancelled is final, so the id never returns).
   */
  hold(task: ClaimedTask): HeldTask | undefined | "cancelled" {
    if (this.#recentCancels.delete(task.id)) return "cancelled"
    const previous = this.held.get(task.id)
    let replaced: HeldTask | undefined
    if (previous !== undefined && !this.unbuffer(previous)) {
      this.superseded.add(previous)
      replaced = previous
    }
    const entry: HeldTask = { task, phase: "buffered", stopReason: undefined, settled: undefined, startedAt: 0 }
    this.held.set(task.id, entry)
    this.#buffer.push(entry)
    return replaced
  }

  /** Drops a buffered task (cancelled or lost); true if it was buffered. */
  unbuffer(entry: HeldTask): boolean {
    const i = this.#buffer.indexOf(entry)
    if (i < 0) return false
    this.#buffer.splice(i, 1)
    if (this.held.get(entry.task.id) === entry) this.held.delete(entry.task.id)
    return true
  }

  /**
   * Takes the buffered tasks that free slots allow, in buffer order, skipping
   * queues at their limit, and marks them running. The caller starts them.
   */
  takeStartable(): Array<HeldTask> {
    const starting: Array<HeldTask> = []
    const buffer = this.#buffer
    for (let i = 0; i < buffer.length && this.handlers < this.#slots.maxConcurrentJobs;) {
      const entry = buffer[i]!
      const q = entry.task.queue
      if ((this.#handlersIn.get(q) ?? 0) >= (this.#slots.queueConcurrency.get(q) ?? Infinity)) {
        i++
        continue
      }
      // The head, nearly always (only limited queues are skipped): shift is O(1)
      // here, splice would move the whole buffer for every start.
      if (i === 0) buffer.shift()
      else buffer.splice(i, 1)
      entry.phase = "running"
      this.handlers++
      this.#handlersIn.set(q, (this.#handlersIn.get(q) ?? 0) + 1)
      starting.push(entry)
    }
    return starting
  }

  /** The handler of `entry` ended: its slot is free. False if it was not running. */
  handlerEnded(entry: HeldTask): boolean {
    if (entry.phase !== "running") return false
    entry.phase = "settling"
    this.handlers--
    this.#handlersIn.set(entry.task.queue, (this.#handlersIn.get(entry.task.queue) ?? 1) - 1)
    return true
  }

  /** The outcome of `entry` is written: it is held no more. */
  settled(entry: HeldTask): void {
    // Only its own entry: a newer claim of the same task may be held now.
    if (this.held.get(entry.task.id) === entry) this.held.delete(entry.task.id)
    this.superseded.delete(entry)
  }

  /** Empties the buffer (the shutdown hands those tasks back) and returns what it held. */
  takeBuffered(): Array<HeldTask> {
    const unstarted = this.#buffer.splice(0)
    for (const entry of unstarted) if (this.held.get(entry.task.id) === entry) this.held.delete(entry.task.id)
    return unstarted
  }

  /** Every run not settled yet, superseded ones included. */
  unsettled(): Array<HeldTask> {
    return [...this.held.values(), ...this.superseded]
  }

  /**
   * Remembers a cancelled task id, also one found held here: the entry found may be
   * a stale claim of the task while a newer claim of it is on its way back.
   * Cancelled is final, so remembering never stops a task that may run.
   */
  rememberCancel(taskId: string): void {
    this.#recentCancels.add(taskId)
    if (this.#recentCancels.size > recentCancelsKept) this.#recentCancels.delete(this.#recentCancels.values().next().value!)
  }
}
