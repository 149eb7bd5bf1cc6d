/**
 * The runtime's event catalogue: what happens to tasks inside a worker, told to
 * one place. The runtime emits; the log lines (EventLog) and an application's own
 * observers subscribe. The runtime knows nothing of who listens.
 *
 * Emitting is synchronous and cheap: one event object, handed to each listener in
 * turn. A listener must not block or throw (one that throws is logged once per
 * event and the others still hear it); one that needs to do I/O queues the event
 * (bounded) and works in its own fiber, as EventLog does.
 */
import { Context, Effect, Layer, Scope } from "effect"
import type { LastError } from "../domain/Classification.ts"
import type { Outcome } from "../domain/Outcome.ts"
import type { ClaimedTask, Task } from "../domain/Task.ts"
import type { TaskStatus } from "../domain/TaskStatus.ts"


/** Why a run was stopped from outside its handler. */
export type StopReason = "cancel" | "shutdown" | "lease-expired"

/** A task the reaper took from a worker whose lease on it expired. */
export interface ReapedTask {
  readonly id: string
  /** `retrying` or `failed` (its run counted), `queued` (never started: its attempt given back). */
  readonly status: TaskStatus
  readonly lastError: LastError | null
}

/** A task an enqueue statement returned: written now (`created`), or found by its id or dedupe key. */
export interface EnqueuedTask {
  readonly type: string
  readonly queue: string
  readonly created: boolean
}

/**
 * Everything the runtime reports, tagged. Succeeded, retrying, failed (the
 * dead-letter state of a task) and cancelled runs are `Settled` with that outcome.
 */
export type RuntimeEvent =
  /**
   * An enqueue statement returned (every enqueue path passes through the task
   * store: typed, by name, bulk, Kafka ingress): one entry per task, in order. Told
   * when the statement returns, so a caller's transaction that then rolls back was
   * still counted.
   */
  | { readonly _tag: "Enqueued"; readonly tasks: ReadonlyArray<EnqueuedTask> }
  /** A claim took `tasks` for this worker (started at once, or held in the local queue). */
  | { readonly _tag: "Claimed"; readonly workerId: string; readonly tasks: ReadonlyArray<ClaimedTask> }
  /** A task's handler is starting (its payload decoded, its start recorded). */
  | { readonly _tag: "Started"; readonly workerId: string; readonly task: ClaimedTask }
  /** A run was stopped (its handler interrupted; settling follows): the first reason given, which sticks. */
  | { readonly _tag: "Stopped"; readonly workerId: string; readonly task: ClaimedTask; readonly reason: StopReason }
  /**
   * A run's outcome is written (or abandoned): once per run taken from the local
   * queue to start, whether or not its handler ran (an unknown type, an invalid
   * payload fail it first). A buffered task dropped (cancelled) or handed back at
   * shutdown (Released) has none.
   */
  | {
    readonly _tag: "Settled"
    readonly workerId: string
    readonly task: ClaimedTask
    readonly outcome: Outcome
    /** Milliseconds from the handler's start to the outcome written; 0 when no handler ran. */
    readonly runMs: number
  }
  /** A run's progress was written (the flusher's write, at most one per PROGRESS_INTERVAL). */
  | { readonly _tag: "Progress"; readonly workerId: string; readonly taskId: string; readonly progress: Task["progress"] }
  /**
   * Tasks held here unstarted (prefetched) went back to the queue at shutdown,
   * attempt given back. A started run released at shutdown is `Settled` with the
   * outcome "released".
   */
  | { readonly _tag: "Released"; readonly workerId: string; readonly taskIds: ReadonlyArray<string> }
  /** The reaper took tasks whose leases expired (their workers stalled or crashed). */
  | { readonly _tag: "Reaped"; readonly workerId: string; readonly tasks: ReadonlyArray<ReapedTask> }
  /**
   * A batch of Kafka messages is written (one transaction) and its offset committed:
   * `nextOffset` is the partition's committed offset now.
   */
  | {
    readonly _tag: "IngressBatchCommitted"
    readonly topic: string
    readonly partition: number
    readonly nextOffset: string
    readonly messages: number
    readonly created: number
    readonly existing: number
    readonly deadLettered: number
    readonly cancelled: number
    /** Messages of the partition after this batch not yet consumed (its high watermark minus `nextOffset`), by this batch's fetch. */
    readonly lag: number
  }
  /** A Kafka message could not become a task: it is a dead letter now (written in its batch's transaction). */
  | {
    readonly _tag: "MessageDeadLettered"
    readonly topic: string
    readonly partition: number
    readonly offset: string
    readonly reason: string
  }
  /** The consumer joined its group: these partitions are this instance's now. */
  | {
    readonly _tag: "IngressJoined"
    readonly groupId: string
    readonly partitions: ReadonlyArray<{ readonly topic: string; readonly partition: number }>
  }
  /** The consumer lost the broker or its group (kafkajs restarts it): no partitions until it joins again. */
  | { readonly _tag: "IngressDisconnected"; readonly reason: string }
  /**
   * A batch kept failing (the database unreachable): nothing of it committed, its
   * partition paused and sought back to `offset`, its first message.
   */
  | { readonly _tag: "IngressPaused"; readonly topic: string; readonly partition: number; readonly offset: string }
  /** The database answers again: the paused partition is consumed again from where it was sought back. */
  | { readonly _tag: "IngressResumed"; readonly topic: string; readonly partition: number }
  /** The status relay published `count` events (acknowledged by the broker) and marked them published. */
  | { readonly _tag: "RelayPublished"; readonly count: number }

/** The kinds of event. */
export type RuntimeEventTag = RuntimeEvent["_tag"]

/** Every kind: the hub keeps one listener list per kind. */
const allTags: ReadonlyArray<RuntimeEventTag> = [
  "Enqueued", "Claimed", "Started", "Stopped", "Settled", "Progress", "Released", "Reaped",
  "IngressBatchCommitted", "MessageDeadLettered", "IngressJoined", "IngressDisconnected", "IngressPaused", "IngressResumed",
  "RelayPublished"
]

/** A subscriber: called synchronously for every event of the kinds it chose. */
export type Listener = (event: RuntimeEvent) => void

/** The event hub. */
export class RuntimeEvents extends Context.Service<RuntimeEvents, {
  /** Tells every listener of the event's kind, in subscription order. */
  readonly emit: (event: RuntimeEvent) => void
  /** Whether anyone listens to `tag`: an emitter skips building an event nobody hears. */
  readonly observed: (tag: RuntimeEventTag) => boolean
  /** Adds `listener` for events of `tags`, for the scope's lifetime. */
  readonly subscribe: (tags: ReadonlyArray<RuntimeEventTag>, listener: Listener) => Effect.Effect<void, never, Scope.Scope>
}>()("taskfiber/RuntimeEvents") {}

/**
 * A hub with no listeners yet. A listener that throws is logged with `context`'s
 * services (the logger and level of the layer that made the hub).
 */
export const make = (context: Context.Context<never> = Context.empty()): RuntimeEvents["Service"] => {
  // One array per kind, in a plain object (a property read per emit or `observed`,
  // on the path of every task); arrays are replaced, never mutated, so an emit in
  // progress keeps the listeners it started with.
  const listeners = Object.fromEntries(allTags.map((tag) => [tag, []])) as unknown as Record<
    RuntimeEventTag,
    ReadonlyArray<Listener>
  >
  const emit = (event: RuntimeEvent) => {
    for (const listener of listeners[event._tag]) {
      try {
        listener(event)
      } catch (error) {
        Effect.runForkWith(context)(Effect.logError("a runtime event listener threw", { event: event._tag, error: String(error) }))
      }
    }
  }
  const update = (tags: ReadonlyArray<RuntimeEventTag>, f: (ls: ReadonlyArray<Listener>) => ReadonlyArray<Listener>) =>
    Effect.sync(() => {
      for (const tag of tags) listeners[tag] = f(listeners[tag])
    })
  return RuntimeEvents.of({
    emit,
    observed: (tag) => listeners[tag].length > 0,
    subscribe: (tags, listener) =>
      Effect.acquireRelease(
        update(tags, (ls) => [...ls, listener]),
        () => update(tags, (ls) => ls.filter((l) => l !== listener))
      )
  })
}

/** The hub as a layer (one per runtime; every supervisor built on it emits to it). */
export const layer: Layer.Layer<RuntimeEvents> = Layer.effect(RuntimeEvents, Effect.map(Effect.context<never>(), make))
