/**
 * The dispatcher: claims when there is free capacity and starts what the slots
 * allow. It claims never more than the free slots plus PREFETCH (with none, no task
 * waits in the local queue while a higher-priority one could start: the
 * database's claim order is the priority order). It sleeps until woken — by the
 * Wakeups port (an enqueue, a release, a replay), by a job ending, by the reaper —
 * or by a timer set to the earliest future `run_at`; no busy polling.
 *
 * Two loops, each a BackgroundLoop: the claimer, and the starter, which starts
 * buffered tasks as soon as a handler's end frees a slot.
 */
import { Deferred, Duration, Effect, Fiber, Option, Queue, Scope } from "effect"
import type { ClaimedTask } from "../domain/Task.ts"
import type { IdleWork } from "../coordination/IdleWork.ts"
import { Wakeups } from "../coordination/Wakeups.ts"
import type { TaskStore } from "../store/TaskStore.ts"
import * as BackgroundLoop from "./BackgroundLoop.ts"
import type { HeldTask, LocalQueue } from "./LocalQueue.ts"
import type { RuntimeConfig } from "./RuntimeConfig.ts"

/** Longest sleep of an idle dispatcher: recovers a wake-up lost with its connection. */
const idleRecheck = Duration.seconds(30)

/** Milliseconds added to the window of tasks that count as "came due after the claim" (see sleepUntilWoken). */
const dueMargin = 50

/** What the dispatcher is given. */
export interface DispatcherOptions {
  readonly config: RuntimeConfig
  readonly store: TaskStore["Service"]
  readonly local: LocalQueue
  readonly workerId: string
  /** The queues and job types this worker serves. */
  readonly queues: ReadonlyArray<string>
  readonly types: ReadonlyArray<string>
  /** Starts the handler of a task marked running (synchronously). */
  readonly start: (entry: HeldTask) => void
  /** A newer claim replaced this started run (see LocalQueue.hold): stop it. */
  readonly replaced: (entry: HeldTask) => void
  /** Tells the observers of a claim (the tasks it took; those cancelled meanwhile are not held). */
  readonly claimed: (tasks: ReadonlyArray<ClaimedTask>) => void
  /** Run whenever the dispatcher is idle (the hook itself does its work once). */
  readonly idle: Option.Option<IdleWork["Service"]>
  readonly scope: Scope.Scope
}

/** A dispatcher: its signals exist once it is made; its loops run once it is started. */
export interface Dispatcher {
  /** Starts the starter, subscribes to wake-ups, then starts the claimer, in the scope. */
  readonly start: Effect.Effect<void>
  /** Asks for a claim soon (a one-slot signal: raising it twice is raising it once). */
  readonly wake: () => void
  /** Asks the starter to start buffered tasks. */
  readonly startSoon: () => void
  /** Stops claiming and waits for the claim in flight (uninterruptible: what it takes is held first). */
  readonly stop: Effect.Effect<void>
  /** Done after the first claim (and the idle work it may start). */
  readonly ready: Effect.Effect<void>
}

/**
 * Raises a one-slot signal. Offering to a full sliding queue would drop and
 * re-add its message; a raised signal stays as it is.
 */
const raise = (signal: Queue.Queue<void>) => {
  if (Queue.sizeUnsafe(signal) === 0) Queue.offerUnsafe(signal, undefined)
}

/** Makes the dispatcher; its loops run in `options.scope` once it is started. */
export const make = (options: DispatcherOptions): Effect.Effect<Dispatcher, never, Wakeups> =>
  Effect.gen(function*() {
    const { config, store, local, workerId, queues, types, scope } = options
    const leaseMs = Duration.toMillis(config.lease)
    const wakeSignal = yield* Queue.sliding<void>(1)
    const startSignal = yield* Queue.sliding<void>(1)
    const wake = () => raise(wakeSignal)
    let claiming = true
    // When the last claims began (performance.now()), and the queues they skipped
    // (at their QUEUE_CONCURRENCY limit).
    let lastClaimAt = 0
    let notClaimed: Array<string> = []
    const capacity = config.maxConcurrentJobs + Math.max(0, config.prefetch)
    // Settling tasks wait for their (batched) completion; bounding them bounds
    // memory when the database is slower than the handlers.
    const maxHeld = capacity * 2 + config.claimBatch

    // Started after the choice: a handler that ends at once frees its slot for the
    // next pump, not for this loop. Synchronous, so nothing can come between
    // marking an entry running and starting its handler.
    const pump = Effect.sync(() => {
      for (const entry of local.takeStartable()) options.start(entry)
    })

    const hold = (tasks: ReadonlyArray<ClaimedTask>) =>
      Effect.sync(() => {
        for (const task of tasks) {
          const replaced = local.hold(task)
          if (replaced !== undefined && replaced !== "cancelled") options.replaced(replaced)
        }
        if (tasks.length > 0) options.claimed(tasks)
      })

    /**
     * Claims for the free capacity, per-queue limits respected. "more": a full batch
     * came back and there is room for more; "short": fewer than asked (the queues
     * may hold only future tasks); "full": no room worth a claim.
     */
    const claimOnce = Effect.gen(function*() {
      if (!claiming) return "full" as const
      const room = Math.min(capacity - local.handlers - local.buffered, maxHeld - local.held.size)
      // With a prefetch buffer, claim in large batches: when half the room is free,
      // or when the buffer cannot feed every slot.
      const worth = config.prefetch <= 0 ||
        room >= Math.min(config.claimBatch, Math.ceil(capacity / 2)) ||
        local.handlers + local.buffered < config.maxConcurrentJobs
      if (room <= 0 || !worth) return "full" as const
      const unlimited = queues.filter((q) => !config.queueConcurrency.has(q))
      const groups: Array<{ readonly queues: ReadonlyArray<string>; readonly limit: number | undefined }> = []
      if (unlimited.length > 0) groups.push({ queues: unlimited, limit: undefined })
      for (const [q, limit] of config.queueConcurrency) {
        if (queues.includes(q)) groups.push({ queues: [q], limit })
      }
      let budget = room
      let full = false
      let short = false
      lastClaimAt = performance.now()
      notClaimed = []
      for (const group of groups) {
        // Job slots the buffer will not fill: the claim's first tasks take them at
        // once. A queue with a QUEUE_CONCURRENCY limit is claimed only for such
        // slots, so its tasks never wait in the buffer; reckoned after the claims
        // before it, whose prefetch may have filled them.
        const free = local.freeSlots
        const want = group.limit === undefined ? budget : Math.min(free, group.limit - local.activeIn(group.queues[0]!))
        const limit = Math.min(want, budget, config.claimBatch)
        if (limit <= 0) {
          notClaimed.push(...group.queues)
          continue
        }
        // Uninterruptible: a claimed task is held here before anything can stop us.
        const tasks = yield* Effect.uninterruptible(
          Effect.tap(
            store.claimToRun({ workerId, queues: group.queues, types, limit, leaseMs, asyncCommit: true, runNow: Math.min(limit, free) }),
            hold
          )
        )
        yield* pump
        budget -= tasks.length
        if (tasks.length === limit) full = true
        else short = true
      }
      return full && budget > 0 ? "more" as const : short ? "short" as const : "full" as const
    })

    const sleepUntilWoken = (last: "short" | "full") =>
      Effect.gen(function*() {
        // Only a short claim can mean "nothing due yet": then wake for the next
        // run_at too. Otherwise a job ending or a wake-up wakes us.
        //
        // A task that came due after the claim looked counts as next, so that it is
        // claimed at once: asked only for tasks due later than the question's own
        // clock, one retry in ten waited for the 30 s re-check (the timer fired a
        // fraction of a millisecond before its run_at). The window reaches back to
        // when the claim began, plus a margin for the question's time in flight
        // (3–4 ms seen on a loaded machine). Queues the claim skipped (at their
        // limit) are left out: a job's end wakes us for them.
        const next = last === "short"
          ? yield* store.msUntilNextDue({
            queues: notClaimed.length === 0 ? queues : queues.filter((q) => !notClaimed.includes(q)),
            types,
            dueWithinMs: performance.now() - lastClaimAt + dueMargin
          })
          : Option.none<number>()
        const untilNext = Option.match(next, {
          onNone: () => idleRecheck,
          onSome: (ms) => Duration.millis(Math.max(0, Math.min(Duration.toMillis(idleRecheck), ms)))
        })
        yield* Queue.take(wakeSignal).pipe(Effect.timeoutOrElse({ duration: untilNext, orElse: () => Effect.void }))
      })

    // Done after the first claim (and the idle work it may start).
    const looked = yield* Deferred.make<void>()
    // Idle: the claim found nothing more and this instance holds no task (a short
    // claim alone is not enough: a worker draining a backlog has a full buffer when
    // the queue runs dry).
    const whenIdle = (last: "more" | "short" | "full") =>
      last === "short" && local.held.size === 0 && Option.isSome(options.idle) ? options.idle.value.run : Effect.void
    const claimer = Effect.flatMap(claimOnce, (last) =>
      Effect.andThen(
        Effect.andThen(whenIdle(last), Deferred.succeed(looked, undefined)),
        last === "more" ? Effect.void : sleepUntilWoken(last)
      )).pipe(Effect.onError(() => Deferred.succeed(looked, undefined)))

    const wakeups = yield* Wakeups
    let fiber: Fiber.Fiber<never> | undefined
    const start = Effect.gen(function*() {
      yield* BackgroundLoop.fork("starter", Effect.andThen(Queue.take(startSignal), pump), scope)
      // The first claim waits for the subscription, so a task enqueued after that
      // claim always wakes us.
      yield* wakeups.subscribe((queue) => {
        if (queue === undefined || queues.includes(queue)) wake()
      }).pipe(Scope.provide(scope))
      fiber = yield* BackgroundLoop.fork("dispatcher", claimer, scope)
    })

    return {
      start,
      wake,
      startSoon: () => raise(startSignal),
      stop: Effect.suspend(() => {
        claiming = false
        return fiber === undefined ? Effect.void : Fiber.interrupt(fiber)
      }),
      ready: Deferred.await(looked)
    }
  })
