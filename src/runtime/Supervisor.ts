/**
 * The supervisor: one scoped service that owns the job fibers of this instance.
 *
 * - dispatcher: claims when there is free capacity, never more than the free slots
 *   (so no task waits in a local buffer while a higher-priority one could start: the
 *   database's claim order is the priority order). It sleeps until woken by
 *   `NOTIFY taskfiber_tasks` (an enqueue, a release, a replay), by a job ending, or
 *   by a timer set to the earliest future `run_at` — no busy polling.
 * - heartbeat: renews the lease of every claim this instance holds in one statement
 *   per lease/3 and records which prefetched tasks have started; a run whose claim
 *   lost its task (cancelled, or reaped after a stall) is interrupted.
 * - worker registry: says every 10 s which queues and types this worker serves.
 * - reaper: expired leases of crashed workers → retrying (or failed), "stalled";
 *   tasks they held without starting → queued, attempt given back.
 * - cancel bus subscriber: interrupts a running task's fiber when it is cancelled.
 * - progress flusher: writes pending progress and checkpoints of running tasks,
 *   once per `progressInterval` (see ProgressReporter).
 * - unserved watch: once a minute, warns of due tasks no live worker serves.
 * - shutdown (scope close): stop claiming, let running jobs finish for
 *   `shutdownGrace`, interrupt the rest and release them to queued (checkpoint kept,
 *   attempt not consumed); a handler that ignores the interruption is waited for one
 *   more `shutdownGrace`, then left to its lease.
 *
 * Each duty is a loop that survives the failure of any step (BackgroundLoop). Every
 * map entry is one claim: a newer claim of the same task (this instance's own
 * stalled run was reaped, and it claimed the task again) replaces it and stops the
 * old run, whose later settling touches neither the map nor the database.
 */
import { hostname } from "node:os"
import { randomBytes } from "node:crypto"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, LogLevel, Option, Queue, Ref, References, Scope } from "effect"
import { PgClient } from "@effect/sql-pg"
import type { ClaimedTask } from "../domain/Task.ts"
import type { DatabaseError } from "../store/DatabaseError.ts"
import { TaskStore } from "../store/TaskStore.ts"
import { ColdConnections } from "../store/Warmup.ts"
import * as Workers from "../store/Workers.ts"
import * as BackgroundLoop from "./BackgroundLoop.ts"
import { CancelBus } from "./CancelBus.ts"
import { JobRegistry } from "./JobRegistry.ts"
import type { ProgressReporter } from "./ProgressReporter.ts"
import * as RuntimeConfig from "./RuntimeConfig.ts"
import * as TaskRunner from "./TaskRunner.ts"
import * as Completer from "./Completer.ts"
import { Deadlines } from "./Deadlines.ts"
import * as OutcomeLog from "./OutcomeLog.ts"

/** The channel the schema's triggers notify when tasks become queued. */
export const channel = "taskfiber_tasks"

/** Longest sleep of an idle dispatcher: recovers a notification lost with its connection. */
const idleRecheck = Duration.seconds(30)

/** Milliseconds added to the window of tasks that count as "came due after the claim" (see sleepUntilWoken). */
const dueMargin = 50

/** How often the supervisor looks for due tasks that no live worker serves. */
const unservedCheckEvery = Duration.minutes(1)

/** The last cancelled task ids this instance heard of (see the canceller and `hold`). */
const recentCancelsKept = 1024

/**
 * A task held by this instance: waiting in the local buffer (prefetched), its
 * handler running (counts against MAX_CONCURRENT_JOBS), or settling (handler
 * ended, outcome being written: its slot is already free).
 */
interface Running extends TaskRunner.RunControl {
  readonly task: ClaimedTask
  phase: "buffered" | "running" | "settling"
  /**
   * Done once the task's outcome is written (or abandoned). Made only when the
   * shutdown waits for the task: a Deferred per task cost an allocation on every run.
   */
  settled: Deferred.Deferred<void> | undefined
}

/** The supervisor service. */
export class Supervisor extends Context.Service<Supervisor, {
  readonly workerId: string
  /** Cancels a task: in the database, and its fiber if it runs here. */
  readonly cancel: (taskId: string, reason?: string) => Effect.Effect<boolean, DatabaseError>
  /** Ids of the tasks running in this instance. */
  readonly running: Effect.Effect<ReadonlyArray<string>>
  /** The outcome of every run, as it is settled (bounded: oldest dropped first). */
  readonly outcomes: Effect.Effect<Queue.Dequeue<{ readonly taskId: string; readonly outcome: TaskRunner.Outcome }>>
}>()("taskfiber/Supervisor") {}

/**
 * Raises a one-slot signal. Offering to a full sliding queue would drop and
 * re-add its message; a raised signal stays as it is.
 */
const signalUnsafe = (signal: Queue.Queue<void>) => {
  if (Queue.sizeUnsafe(signal) === 0) Queue.offerUnsafe(signal, undefined)
}

/** A new worker id: host, pid and a random suffix (several supervisors per process). */
export const makeWorkerId = (): string => `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`

const make = (config: RuntimeConfig.RuntimeConfig) =>
  Effect.gen(function*() {
    const store = yield* TaskStore
    const workers = yield* Workers.Workers
    const registry = yield* JobRegistry
    const bus = yield* CancelBus
    const pg = yield* PgClient.PgClient
    const scope = yield* Effect.scope
    const workerId = makeWorkerId()
    const cold = yield* Effect.serviceOption(ColdConnections)
    const reporters = new Set<ProgressReporter>()
    const queues = registry.queues
    // Only tasks this worker has a handler for are claimed: a type enqueued by a
    // newer deploy waits for a worker that knows it.
    const types = registry.jobs.map((j) => j.name)
    const self = { id: workerId, queues, types }
    const leaseMs = Duration.toMillis(config.lease)
    // The current claim of each task held here, by task id.
    const running = new Map<string, Running>()
    // Runs replaced by a newer claim of their task, not settled yet: the shutdown
    // waits for them too.
    const superseded = new Set<Running>()
    // The tasks cancelled lately: a claim that committed just before a cancellation
    // may still be on its way back, and must not start its task.
    const recentCancels = new Set<string>()
    const wake = yield* Queue.sliding<void>(1)
    const claiming = yield* Ref.make(true)
    // Bounded: outcomes are for observers (tests, metrics); the oldest drop first.
    const outcomes = OutcomeLog.make<{ readonly taskId: string; readonly outcome: TaskRunner.Outcome }>(10_000)
    const signal = Queue.offer(wake, undefined)

    // When the dispatcher's last claims began (performance.now()), and the queues
    // they skipped (at their QUEUE_CONCURRENCY limit).
    let lastClaimAt = 0
    let notClaimed: Array<string> = []
    // Claimed tasks not yet started, in claim order (highest effective priority first).
    const buffer: Array<Running> = []
    let handlers = 0
    const handlersIn = new Map<string, number>()
    const queueLimit = (queue: string) => config.queueConcurrency.get(queue) ?? Infinity
    // In this instance: buffered plus running handlers (settling ones hold no slot).
    const heldIn = (queue: string) => {
      let n = handlersIn.get(queue) ?? 0
      for (const r of buffer) if (r.task.queue === queue) n++
      return n
    }
    const capacity = config.maxConcurrentJobs + Math.max(0, config.prefetch)
    // Settling tasks wait for their (batched) completion; bounding them bounds
    // memory when the database is slower than the handlers.
    const maxHeld = capacity * 2 + config.claimBatch

    const completer = yield* Completer.make({ store, workerId, maxBatch: Math.max(config.claimBatch, 1), scope })
    const context = yield* Effect.context<never>()
    const env: TaskRunner.RunnerEnv = {
      store, registry, config, workerId, reporters, completer, context,
      deadlines: new Deadlines(),
      tracing: TaskRunner.tracingIn(context)
    }
    // Handler ends wake the starter (which starts buffered tasks at once) and the
    // dispatcher (which claims when there is room), each a one-slot signal.
    const startSignal = yield* Queue.sliding<void>(1)
    // "task settled" is logged by one fiber, off the path that frees job slots;
    // when Info is below the minimum level nothing is queued for it at all.
    const settledLog = yield* Queue.sliding<{ readonly task: ClaimedTask; readonly outcome: TaskRunner.Outcome }>(10_000)
    const logsSettled = LogLevel.isGreaterThanOrEqualTo("Info", Context.get(context, References.MinimumLogLevel))

    const hooks: TaskRunner.RunHooks<Running> = {
      onHandlerEnd: (entry) => {
        if (entry.phase !== "running") return
        entry.phase = "settling"
        handlers--
        handlersIn.set(entry.task.queue, (handlersIn.get(entry.task.queue) ?? 1) - 1)
        signalUnsafe(startSignal)
        signalUnsafe(wake)
      },
      onSettled: (entry, outcome) => {
        // Only its own entry: a newer claim of the same task may hold the slot now.
        if (running.get(entry.task.id) === entry) running.delete(entry.task.id)
        superseded.delete(entry)
        outcomes.record({ taskId: entry.task.id, outcome })
        if (logsSettled) Queue.offerUnsafe(settledLog, { task: entry.task, outcome })
        if (entry.settled !== undefined) Deferred.doneUnsafe(entry.settled, Exit.void)
        signalUnsafe(wake)
      }
    }

    // TaskRunner.requestStop interrupts the handler's fiber only; the outcome is
    // written outside it, uninterruptibly.
    const fork = (entry: Running) => TaskRunner.start(env, entry.task, entry, hooks)

    /**
     * Starts buffered tasks while job slots are free, in buffer order, skipping
     * tasks of queues at their limit. The choice is made synchronously, so two
     * fibers pumping at once never overfill the slots.
     */
    const pump: Effect.Effect<void> = Effect.suspend(() => {
      const starting: Array<Running> = []
      for (let i = 0; i < buffer.length && handlers < config.maxConcurrentJobs;) {
        const entry = buffer[i]!
        const q = entry.task.queue
        if ((handlersIn.get(q) ?? 0) >= queueLimit(q)) {
          i++
          continue
        }
        // The head, nearly always (only limited queues are skipped): shift is O(1)
        // here, splice would move the whole buffer for every start.
        if (i === 0) buffer.shift()
        else buffer.splice(i, 1)
        entry.phase = "running"
        handlers++
        handlersIn.set(q, (handlersIn.get(q) ?? 0) + 1)
        starting.push(entry)
      }
      // Started after the choice: a handler that ends at once frees its slot for
      // the next pump, not for this loop. Synchronous, so nothing can come between
      // marking an entry running and starting its handler.
      for (const entry of starting) fork(entry)
      return Effect.void
    })

    const starter = Effect.andThen(Queue.take(startSignal), pump)

    const logSettled = ({ task, outcome }: { readonly task: ClaimedTask; readonly outcome: TaskRunner.Outcome }) =>
      Effect.logInfo("task settled", { taskId: task.id, taskType: task.type, attempt: task.attempt, outcome })
    // An entry taken is always logged (taking and logging are one step for an
    // interrupt); the shutdown logs what is left once every task has settled.
    const settledLogger = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.takeAll(settledLog)), (all) => Effect.forEach(all, logSettled, { discard: true })))
    const logRemainingSettled = Effect.gen(function*() {
      while (true) {
        const next = yield* Queue.poll(settledLog)
        if (Option.isNone(next)) return
        yield* logSettled(next.value)
      }
    })

    const interrupt = TaskRunner.requestStop

    /** Drops a buffered task (cancelled or lost); true if it was buffered. */
    const unbuffer = (entry: Running) => {
      const i = buffer.indexOf(entry)
      if (i < 0) return false
      buffer.splice(i, 1)
      if (running.get(entry.task.id) === entry) running.delete(entry.task.id)
      return true
    }

    const hold = (task: ClaimedTask) => {
      // Cancelled after this claim committed, before it came back: it never runs
      // (the database says cancelled; cancelled is final, so the id never returns).
      if (recentCancels.delete(task.id)) return
      const previous = running.get(task.id)
      if (previous !== undefined && !unbuffer(previous)) {
        // This instance's earlier claim of the task lost it (it stalled past its
        // lease and was reaped) and this claim took it again: that run stops now,
        // and nothing it still does is accepted by the database.
        superseded.add(previous)
        TaskRunner.stopUnsafe(previous, "lease-lost")
      }
      const entry: Running = { task, phase: "buffered", stopReason: undefined, settled: undefined }
      running.set(task.id, entry)
      buffer.push(entry)
    }

    /**
     * Claims for the free capacity, per-queue limits respected. "more": a full batch
     * came back and there is room for more; "short": fewer than asked (the queues
     * may hold only future tasks); "full": no room worth a claim.
     */
    const dispatchOnce = Effect.gen(function*() {
      if (!(yield* Ref.get(claiming))) return "full" as const
      const room = Math.min(capacity - handlers - buffer.length, maxHeld - running.size)
      // With a prefetch buffer, claim in large batches: when half the room is free,
      // or when the buffer cannot feed every slot.
      const worth = config.prefetch <= 0 ||
        room >= Math.min(config.claimBatch, Math.ceil(capacity / 2)) ||
        handlers + buffer.length < config.maxConcurrentJobs
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
        // Job slots the buffer will not fill: the claim's first tasks take them at once.
        const free = Math.max(0, config.maxConcurrentJobs - handlers - buffer.length)
        // A queue with a QUEUE_CONCURRENCY limit is claimed only for such slots, so
        // its tasks start at once and never wait in the buffer (prefetched). Worked
        // out here, after the claims before it: reckoned before them, a limited
        // queue was claimed for slots the first claim's prefetch had already filled.
        const q = group.queues[0]!
        const want = group.limit === undefined ? budget : Math.min(free, group.limit - heldIn(q))
        const limit = Math.min(want, budget, config.claimBatch)
        if (limit <= 0) {
          notClaimed.push(...group.queues)
          continue
        }
        // Uninterruptible: a claimed task is held here before anything can stop us.
        const tasks = yield* Effect.uninterruptible(
          Effect.tap(
            store.claimToRun({ workerId, queues: group.queues, types, limit, leaseMs, asyncCommit: true, runNow: Math.min(limit, free) }),
            (tasks) =>
              Effect.sync(() => {
                for (const task of tasks) hold(task)
              })
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
        // run_at too. Otherwise a job ending or a notification wakes us.
        //
        // A task that came due after the claim looked counts as next, so that it is
        // claimed at once: asking only for tasks due in the future (by the clock of
        // the question, later than the claim's) left such a task for the 30 s
        // re-check. It happened to one retry in ten when the timer below fired a
        // fraction of a millisecond before the run_at it was set for. The window
        // reaches back to when the claim began, plus a margin for the question's own
        // time in flight (3–4 ms seen on a loaded machine). Queues the claim skipped
        // (at their limit) are left out: a job's end wakes us for them. A due task
        // held by another claimer can cost a few more claims, within the margin.
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
        yield* Queue.take(wake).pipe(Effect.timeoutOrElse({ duration: untilNext, orElse: () => Effect.void }))
      })

    // Done after the first claim (and the warm-up it may start): the supervisor is
    // up from then on.
    const looked = yield* Deferred.make<void>()
    // Idle: the claim found nothing more and this instance holds no task (a short
    // claim alone is not enough: a worker draining a backlog has a full buffer when
    // the queue runs dry). The time to warm the connections a "when-idle" Database
    // layer left cold (once; see Warmup.ColdConnections).
    const warmWhenIdle = (last: "more" | "short" | "full") =>
      last === "short" && running.size === 0 && Option.isSome(cold) ? cold.value.warm : Effect.void
    const dispatcher = Effect.flatMap(dispatchOnce, (last) =>
      Effect.andThen(
        Effect.andThen(warmWhenIdle(last), Deferred.succeed(looked, undefined)),
        last === "more" ? Effect.void : sleepUntilWoken(last)
      )).pipe(Effect.onError(() => Deferred.succeed(looked, undefined)))

    const heartbeat = Effect.gen(function*() {
      if (running.size === 0) return
      // Only claims held before the statement can be judged by it: one made while
      // it was in flight is not in its answer, yet is ours. `started`: its
      // handler's fiber exists (not merely its slot: a start record may be in flight).
      const before = [...running.values()]
      // Only the claims held here: a run whose outcome could not be written was
      // given up and must expire, so that the reaper retries it. A prefetched task
      // whose handler has started has that recorded (schema/011).
      const held = new Set(yield* store.extendLeases(
        workerId,
        leaseMs,
        before.map((e) => ({ id: e.task.id, revision: e.task.revision, started: e.handler !== undefined }))
      ))
      const gone = before.filter((e) => !held.has(e.task.id) && running.get(e.task.id) === e)
      if (gone.length === 0) return
      // Why each claim lost its task, so that its run is reported as what happened:
      // cancelled (here or by another instance) straight from this claim, or not.
      const now = new Map((yield* store.statuses(gone.map((e) => e.task.id))).map((t) => [t.id, t]))
      for (const entry of gone) {
        if (unbuffer(entry)) continue
        const state = now.get(entry.task.id)
        const cancelled = state?.status === "cancelled" && state.revision === entry.task.revision + 1
        yield* interrupt(entry, cancelled ? "cancel" : "lease-lost")
      }
    })

    const reaper = Effect.gen(function*() {
      const reaped = yield* store.reapExpired(100)
      for (const task of reaped) {
        yield* task.status === "queued"
          ? Effect.logWarning("task of a stopped worker handed back unstarted, attempt kept", { taskId: task.id })
          : Effect.logWarning("stalled task reaped", { taskId: task.id, status: task.status, lastError: task.lastError?.message })
      }
      if (reaped.length > 0) yield* signal
    })

    // One fiber writes the pending progress of every running task per interval;
    // one reporter's defect costs the others nothing.
    const progressFlusher = Effect.suspend(() =>
      Effect.forEach(
        [...reporters],
        (r) => Effect.catchDefect(r.flush, (defect) => Effect.logError("progress flush failed", defect)),
        { discard: true }
      )
    )

    const unservedWatch = Effect.gen(function*() {
      yield* Effect.sleep(unservedCheckEvery)
      for (const u of yield* workers.unserved(Workers.liveWithinMs)) {
        yield* Effect.logWarning("due tasks that no live worker serves are waiting", {
          queue: u.queue,
          taskType: u.type,
          count: u.count,
          waitingSeconds: Math.round(u.waitingSeconds),
          hint: "run a worker with this job in this queue (Job.define queue / otherQueues)"
        })
      }
    })

    // Done once LISTEN is confirmed (or has failed once): the dispatcher's first
    // claim waits for it, so a task enqueued after that claim is always notified.
    const listening = yield* Deferred.make<void>()
    const listener = Effect.gen(function*() {
      const notifications = yield* pg.listen(channel)
      yield* Deferred.succeed(listening, undefined)
      // Notifications sent while not listening (before the first LISTEN, or between
      // a lost connection and the new one) are gone: claim once to catch up.
      yield* signal
      yield* Effect.forever(Effect.flatMap(Queue.take(notifications), (n) =>
        queues.includes(n.payload) ? signal : Effect.void
      ))
    }).pipe(
      Effect.scoped,
      Effect.onError(() => Deferred.succeed(listening, undefined))
    )

    const remember = (taskId: string) => {
      recentCancels.add(taskId)
      if (recentCancels.size > recentCancelsKept) recentCancels.delete(recentCancels.values().next().value!)
    }
    // Every cancelled id is remembered, also one found here: the entry found may be
    // a stale claim of the task while a newer claim of it is on its way back.
    // Cancelled is final, so remembering never stops a task that may run.
    const canceller = Effect.gen(function*() {
      const take = yield* bus.subscribe
      yield* Effect.forever(Effect.flatMap(take, (taskId) => {
        remember(taskId)
        const entry = running.get(taskId)
        return entry === undefined || unbuffer(entry) ? Effect.void : interrupt(entry, "cancel")
      }))
    }).pipe(Effect.scoped)

    // In the registry at once and every 10 s, off the path to the first claim (a
    // worker facing a backlog starts on it without waiting for this statement).
    const registryFiber = yield* BackgroundLoop.fork("worker registry", workers.seen(self), scope, {
      every: Duration.millis(Workers.renewEveryMs)
    })
    yield* BackgroundLoop.fork("starter", starter, scope)
    yield* BackgroundLoop.fork("settled-task logger", settledLogger, scope)
    yield* BackgroundLoop.fork("heartbeat", heartbeat, scope, { every: Duration.millis(leaseMs / 3) })
    yield* BackgroundLoop.fork("reaper", reaper, scope, { every: config.reapInterval })
    yield* BackgroundLoop.fork("cancel subscriber", canceller, scope)
    yield* BackgroundLoop.fork("progress flusher", progressFlusher, scope, { every: config.progressInterval })
    yield* BackgroundLoop.fork("unserved watch", unservedWatch, scope)
    yield* BackgroundLoop.fork("listener", listener, scope)
    yield* Deferred.await(listening)
    const dispatcherFiber = yield* BackgroundLoop.fork("dispatcher", dispatcher, scope)

    /** Waits for `what` at most one `shutdownGrace`; past it, says so and goes on. */
    const bounded = (what: string) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.asVoid,
        Effect.timeoutOrElse({
          duration: config.shutdownGrace,
          orElse: () => Effect.logWarning(`shutting down: gave up waiting for ${what}`, { graceMs: Duration.toMillis(config.shutdownGrace) })
        })
      )

    // Graceful shutdown, before the forked fibers above are interrupted (LIFO). It
    // runs on the fiber that closes the scope: given the supervisor's services
    // (logger, minimum level) so that its lines obey the same configuration.
    yield* Scope.addFinalizer(scope, Effect.provideContext(Effect.gen(function*() {
      yield* Ref.set(claiming, false)
      // Bounded, as every wait of the shutdown: a claim in flight is uninterruptible
      // (what it takes is held before anything can stop it), and may wait for a
      // connection. Past the bound, what it takes is left to its leases.
      yield* Fiber.interrupt(dispatcherFiber).pipe(bounded("the dispatcher's claim in flight"))
      // Prefetched tasks never started: straight back to the queue, attempt given back.
      const unstarted = buffer.splice(0)
      for (const entry of unstarted) if (running.get(entry.task.id) === entry) running.delete(entry.task.id)
      if (unstarted.length > 0) {
        yield* store.release(workerId, unstarted.map((e) => e.task)).pipe(
          Effect.tap((ids) => Effect.logInfo("shutting down: prefetched tasks released to the queue", { count: ids.length })),
          Effect.catch((error) =>
            Effect.logWarning("prefetched tasks not released; their leases will expire", { count: unstarted.length, error: error.message })
          ),
          bounded("the release of prefetched tasks")
        )
      }
      // An entry still here has not settled yet (settling removes it), so a Deferred
      // made now is completed by its onSettled. All are made before the first wait:
      // made one by one as the waits went, an entry that settled meanwhile got its
      // Deferred too late, and the shutdown waited for it for ever.
      const unsettled = () => [...running.values(), ...superseded]
      const allSettled = () =>
        Effect.suspend(() => {
          const settled = unsettled().map((r) => (r.settled ??= Deferred.makeUnsafe<void>()))
          return Effect.forEach(settled, Deferred.await, { discard: true })
        })
      if (unsettled().length > 0) {
        yield* Effect.logInfo("shutting down: waiting for running jobs", { running: running.size, graceMs: Duration.toMillis(config.shutdownGrace) })
        yield* allSettled().pipe(
          Effect.timeoutOrElse({ duration: config.shutdownGrace, orElse: () => Effect.void })
        )
      }
      if (unsettled().length > 0) {
        yield* Effect.logInfo("shutting down: releasing unfinished jobs to the queue", { running: running.size })
        for (const entry of unsettled()) yield* interrupt(entry, "shutdown")
        // Each runner now releases its task to the queue; wait for them, for one
        // more grace: a handler that ignores interruption (an uninterruptible
        // section, a synchronous loop) must not hold the shutdown for ever.
        yield* allSettled().pipe(Effect.timeoutOrElse({ duration: config.shutdownGrace, orElse: () => Effect.void }))
        const stuck = unsettled()
        if (stuck.length > 0) {
          yield* Effect.logError("shutting down: jobs did not stop when interrupted; their leases will expire and they will be retried", {
            taskIds: stuck.map((e) => e.task.id)
          })
        }
      }
      // Stopped first, so that it cannot put the row back after its removal.
      yield* Fiber.interrupt(registryFiber)
      yield* workers.stopped(workerId).pipe(
        Effect.catch((error) => Effect.logWarning("worker registry not updated", { error: error.message })),
        bounded("the worker registry's update")
      )
      yield* logRemainingSettled
    }), context))

    // Up once the first claim is done: with the shutdown above in place, so that a
    // stop before then releases what that claim took.
    yield* Deferred.await(looked)
    yield* Effect.logInfo("supervisor started", { workerId, queues, maxConcurrentJobs: config.maxConcurrentJobs })

    return Supervisor.of({
      workerId,
      cancel: (taskId, reason = "cancelled") =>
        Effect.gen(function*() {
          const cancelled = yield* store.cancel([taskId], reason)
          const row = cancelled[0]
          if (row?.previousStatus === "running") yield* bus.publish(taskId)
          return row !== undefined
        }),
      running: Effect.sync(() => [...running.keys()]),
      outcomes: outcomes.queue
    })
  })

/** The supervisor with `config`; it runs until the layer's scope closes. */
export const layerWith = (config: RuntimeConfig.RuntimeConfig) => Layer.effect(Supervisor, make(config))

/** The supervisor with the configuration from the environment. */
export const layer = Layer.unwrap(Effect.gen(function*() {
  return layerWith(yield* RuntimeConfig.config)
}))
