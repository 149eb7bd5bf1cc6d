/**
 * The supervisor: one scoped service that owns the job fibers of this instance,
 * composed of small services with one job each:
 *
 * - LocalQueue: the tasks held here and the job slots they use;
 * - Dispatcher: claims for free capacity when woken (Wakeups, a job's end, the next
 *   `run_at`), and starts what the slots allow;
 * - TaskRunner: runs one task's handler and settles its outcome (Completer batches
 *   successes);
 * - maintenance duties, each a BackgroundLoop with the same lifecycle: Heartbeat
 *   (leases), Reaper (expired leases of crashed workers), ProgressFlusher, the
 *   worker registry's renewal and unserved watch; and the Canceller (CancelBus);
 * - Shutdown: the graceful stop when the scope closes.
 *
 * What happens to tasks is emitted to RuntimeEvents (the log lines are one of its
 * subscribers, wired beside it, not here); an event nobody listens to is not
 * built. `outcomes` is the supervisor's own record of its settled runs.
 */
import { hostname } from "node:os"
import { randomBytes } from "node:crypto"
import { Context, Deferred, Effect, Exit, Layer, type Queue } from "effect"
import type { ClaimedTask } from "../domain/Task.ts"
import { CancelBus } from "../coordination/CancelBus.ts"
import { IdleWork } from "../coordination/IdleWork.ts"
import type { Outcome } from "../domain/Outcome.ts"
import { RuntimeEvents, type StopReason } from "../observability/RuntimeEvents.ts"
import type { DatabaseError } from "../store/DatabaseError.ts"
import { TaskStore } from "../store/TaskStore.ts"
import * as Workers from "../store/Workers.ts"
import * as BackgroundLoop from "./BackgroundLoop.ts"
import * as Canceller from "./Canceller.ts"
import * as Completer from "./Completer.ts"
import { Deadlines } from "./Deadlines.ts"
import * as Dispatcher from "./Dispatcher.ts"
import { JobRegistry } from "./JobRegistry.ts"
import { type HeldTask, LocalQueue } from "./LocalQueue.ts"
import * as Heartbeat from "./maintenance/Heartbeat.ts"
import * as ProgressFlusher from "./maintenance/ProgressFlusher.ts"
import * as Reaper from "./maintenance/Reaper.ts"
import * as WorkerRegistration from "./maintenance/WorkerRegistration.ts"
import * as OutcomeLog from "./OutcomeLog.ts"
import type { ProgressReporter } from "./ProgressReporter.ts"
import * as RuntimeConfig from "./RuntimeConfig.ts"
import * as Shutdown from "./Shutdown.ts"
import { tracingIn } from "../observability/Tracing.ts"
import * as TaskRunner from "./TaskRunner.ts"

/** One settled run, as `outcomes` hands it out. */
export interface SettledRun {
  readonly taskId: string
  readonly outcome: Outcome
}

/** The supervisor service. */
export class Supervisor extends Context.Service<Supervisor, {
  readonly workerId: string
  /** Cancels a task: in the database, and its fiber if it runs here. */
  readonly cancel: (taskId: string, reason?: string) => Effect.Effect<boolean, DatabaseError>
  /** Ids of the tasks this instance holds (buffered, running or settling). */
  readonly held: Effect.Effect<ReadonlyArray<string>>
  /** The outcome of every run, as it is settled (bounded: oldest dropped first). */
  readonly outcomes: Effect.Effect<Queue.Dequeue<SettledRun>>
}>()("taskfiber/Supervisor") {}

/** A new worker id: host, pid and a random suffix (several supervisors per process). */
const makeWorkerId = (): string => `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`

/** Settled runs kept for `outcomes` until someone asks. */
const outcomesKept = 10_000

const make = (config: RuntimeConfig.RuntimeConfig) =>
  Effect.gen(function*() {
    const store = yield* TaskStore
    const workers = yield* Workers.Workers
    const registry = yield* JobRegistry
    const bus = yield* CancelBus
    const events = yield* RuntimeEvents
    const idle = yield* Effect.serviceOption(IdleWork)
    const scope = yield* Effect.scope
    const context = yield* Effect.context<never>()
    const workerId = makeWorkerId()
    const queues = registry.queues
    // Only tasks this worker has a handler for are claimed: a type enqueued by a
    // newer deploy waits for a worker that knows it.
    const types = registry.jobs.map((j) => j.name)
    const local = new LocalQueue(config)
    const reporters = new Set<ProgressReporter>()
    const emit = events.emit

    const outcomes = OutcomeLog.make<SettledRun>(outcomesKept)

    const completer = yield* Completer.make({ store, workerId, maxBatch: Math.max(config.claimBatch, 1), scope })
    const env: TaskRunner.RunnerEnv = {
      store, registry, config, workerId, reporters, completer, context,
      deadlines: new Deadlines(), events,
      tracing: tracingIn(context)
    }

    // The hooks and the dispatcher need each other: the hooks call it, it starts
    // runs with them. Assigned below, before `dispatcher.start`, so before any run
    // (hence any hook) exists.
    let dispatcher!: Dispatcher.Dispatcher
    const hooks: TaskRunner.RunHooks<HeldTask> = {
      onHandlerStart: (entry) => {
        entry.startedAt = performance.now()
        if (events.observed("Started")) emit({ _tag: "Started", workerId, task: entry.task })
      },
      onHandlerEnd: (entry) => {
        if (!local.handlerEnded(entry)) return
        dispatcher.startSoon()
        dispatcher.wake()
      },
      onSettled: (entry, outcome) => {
        local.settled(entry)
        outcomes.record({ taskId: entry.task.id, outcome })
        if (events.observed("Settled")) emit({ _tag: "Settled", workerId, task: entry.task, outcome, runMs: entry.startedAt === 0 ? 0 : performance.now() - entry.startedAt })
        if (entry.settled !== undefined) Deferred.doneUnsafe(entry.settled, Exit.void)
        dispatcher.wake()
      }
    }
    const stop = (entry: HeldTask, reason: StopReason) => {
      const first = entry.stopReason === undefined
      TaskRunner.stopUnsafe(entry, reason)
      if (first && events.observed("Stopped")) emit({ _tag: "Stopped", workerId, task: entry.task, reason })
    }
    const start = (entry: HeldTask) => TaskRunner.start(env, entry.task, entry, hooks)

    const registration = yield* BackgroundLoop.start(WorkerRegistration.renewal(workers, { id: workerId, queues, types }), scope)
    dispatcher = yield* Dispatcher.make({
      config, store, local, workerId, queues, types, idle, scope, start,
      // This instance's earlier claim of the task lost it (it stalled past its
      // lease and was reaped) and a new claim took it again: the old run stops, and
      // nothing it still does is accepted by the database.
      replaced: (entry) => stop(entry, "lease-expired"),
      claimed: (tasks: ReadonlyArray<ClaimedTask>) => {
        if (events.observed("Claimed")) emit({ _tag: "Claimed", workerId, tasks: tasks.filter((t) => local.held.get(t.id)?.task === t) })
      }
    })
    const duties: ReadonlyArray<BackgroundLoop.Duty> = [
      Heartbeat.make({ store, local, workerId, lease: config.lease, stop }),
      Reaper.make({ store, workerId, every: config.reapInterval, wake: dispatcher.wake, emit }),
      ProgressFlusher.make(reporters, config.progressInterval),
      WorkerRegistration.unservedWatch(workers),
      Canceller.make(bus, local, stop)
    ]
    for (const duty of duties) yield* BackgroundLoop.start(duty, scope)
    yield* dispatcher.start

    // Before the loops above are interrupted (finalizers run last-added first), and
    // before the first claim is awaited: a stop before then releases what it took.
    yield* Shutdown.install(scope, {
      grace: config.shutdownGrace, store, local, workerId, dispatcher, stop, emit, registration, context,
      deregister: WorkerRegistration.deregister(workers, workerId)
    })
    yield* dispatcher.ready
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
      held: Effect.sync(() => [...local.held.keys()]),
      outcomes: outcomes.queue
    })
  })

/** The supervisor with `config`; it runs until the layer's scope closes. */
export const layerWith = (config: RuntimeConfig.RuntimeConfig) => Layer.effect(Supervisor, make(config))

/** The supervisor with the configuration from the environment. */
export const layer = Layer.unwrap(Effect.gen(function*() {
  return layerWith(yield* RuntimeConfig.config)
}))
