/**
 * A pure model of the task store's state machine, for the model-based test: what
 * each operation must do to each task, and which statements of which claims the
 * database must accept. No I/O: the test drives the real store and compares.
 */
import { Schema } from "effect"

export type Status = "queued" | "running" | "succeeded" | "retrying" | "failed" | "cancelled"

/** One claim as a worker holds it: possibly stale. */
export interface ModelClaim {
  readonly id: string
  readonly revision: number
}

export interface ModelTask {
  readonly id: string
  readonly type: "a" | "b"
  readonly priority: number
  readonly maxAttempts: number
  readonly remove: boolean
  status: Status | "deleted"
  attempt: number
  revision: number
  /** While running: who holds it, under which claim, and whether its start is recorded. */
  holder: { readonly worker: number; readonly revision: number; started: boolean } | undefined
  leaseExpired: boolean
  returnedUnstarted: number
  progress: unknown
  result: unknown
}

export interface Model {
  readonly tasks: Array<ModelTask>
  /** Per worker, the claims it received and has not used to settle. */
  readonly claims: ReadonlyArray<Array<ModelClaim>>
}

/** The types each worker has handlers for: the third one is an older deploy. */
export const workerTypes: ReadonlyArray<ReadonlyArray<"a" | "b">> = [["a", "b"], ["a", "b"], ["a"]]

export const empty = (): Model => ({ tasks: [], claims: [[], [], []] })

const Worker = Schema.Literals([0, 1, 2])
const Pick = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 7 }))

const Picks = Schema.Array(Pick).check(Schema.isMinLength(1), Schema.isMaxLength(3))

/** The operations, as generated. `pick` chooses one of the worker's claims, `task` one of the tasks (modulo). */
export const commands = {
  Enqueue: Schema.TaggedStruct("Enqueue", {
    type: Schema.Literals(["a", "b"]),
    priority: Schema.Literals([0, 1]),
    maxAttempts: Schema.Literals([1, 2, 3]),
    remove: Schema.Boolean
  }),
  Claim: Schema.TaggedStruct("Claim", { worker: Worker, limit: Schema.Literals([1, 2, 3]), runNow: Schema.Literals([0, 1, 2, 3]) }),
  /** Renews every claim the worker holds; bit i of `started`: its i-th claim's handler has started. */
  Heartbeat: Schema.TaggedStruct("Heartbeat", { worker: Worker, started: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 255 })) }),
  Progress: Schema.TaggedStruct("Progress", { worker: Worker, pick: Pick }),
  RecordStart: Schema.TaggedStruct("RecordStart", { worker: Worker, pick: Pick }),
  Complete: Schema.TaggedStruct("Complete", { worker: Worker, picks: Picks }),
  Retry: Schema.TaggedStruct("Retry", { worker: Worker, pick: Pick }),
  Fail: Schema.TaggedStruct("Fail", { worker: Worker, pick: Pick }),
  CancelClaimed: Schema.TaggedStruct("CancelClaimed", { worker: Worker, pick: Pick }),
  Release: Schema.TaggedStruct("Release", { worker: Worker, picks: Picks }),
  Cancel: Schema.TaggedStruct("Cancel", { task: Pick }),
  /** The lease of a running task runs out (its worker stalled): `task` picks among running tasks. */
  Expire: Schema.TaggedStruct("Expire", { task: Pick }),
  Reap: Schema.TaggedStruct("Reap", {}),
  /** A worker stalls past a running task's lease and a reaper takes it at once: Expire, then Reap. */
  Stall: Schema.TaggedStruct("Stall", { task: Pick }),
  Replay: Schema.TaggedStruct("Replay", { task: Pick })
} as const

/**
 * How often each operation is generated, out of 100: enough enqueues and claims
 * that most sequences hold several running tasks, and enough expiries and reaps
 * that claims go stale.
 */
export const weights: { readonly [K in keyof typeof commands]: number } = {
  Enqueue: 12, Claim: 17, Heartbeat: 7, Progress: 5, RecordStart: 4, Complete: 10, Retry: 6, Fail: 4,
  CancelClaimed: 3, Release: 3, Cancel: 3, Expire: 5, Reap: 5, Stall: 10, Replay: 3
}

export const Command = Schema.Union(Object.values(commands))
export type Command = typeof Command.Type

export const find = (model: Model, id: string): ModelTask => {
  const t = model.tasks.find((t) => t.id === id)
  if (t === undefined) throw new Error(`model: no task ${id}`)
  return t
}

/** Whether `claim` of `worker` still holds its task: the database must accept its statements. */
export const holds = (model: Model, worker: number, claim: ModelClaim): boolean => {
  const t = find(model, claim.id)
  return t.status === "running" && t.holder?.worker === worker && t.holder.revision === claim.revision
}

/** The worker's claim chosen by `pick`, if it has any. */
export const pickClaim = (model: Model, worker: number, pick: number): ModelClaim | undefined => {
  const claims = model.claims[worker]!
  return claims.length === 0 ? undefined : claims[pick % claims.length]
}

/** The task chosen by `pick`, if there is any left (of those `which` accepts). */
export const pickTask = (model: Model, pick: number, which: (t: ModelTask) => boolean = () => true): ModelTask | undefined => {
  const live = model.tasks.filter((t) => t.status !== "deleted" && which(t))
  return live.length === 0 ? undefined : live[pick % live.length]
}

/** A worker is done with a claim (it settled, or tried to). */
export const drop = (model: Model, worker: number, claim: ModelClaim) => {
  const claims = model.claims[worker]!
  const i = claims.findIndex((c) => c.id === claim.id && c.revision === claim.revision)
  if (i >= 0) claims.splice(i, 1)
}

const move = (t: ModelTask, to: Status) => {
  t.status = to
  t.revision++
  if (to !== "running") t.holder = undefined
  t.leaseExpired = false
}

export const enqueued = (model: Model, id: string, c: Extract<Command, { _tag: "Enqueue" }>) =>
  model.tasks.push({
    id, type: c.type, priority: c.priority, maxAttempts: c.maxAttempts, remove: c.remove,
    status: "queued", attempt: 0, revision: 1, holder: undefined, leaseExpired: false, returnedUnstarted: 0,
    progress: null, result: null
  })

/** Tasks a claim by `worker` may take now (all due: retries here have no delay). */
export const claimable = (model: Model, worker: number) =>
  model.tasks.filter((t) => (t.status === "queued" || t.status === "retrying") && workerTypes[worker]!.includes(t.type))

export const claimed = (model: Model, worker: number, ids: ReadonlyArray<string>, runNow: number) =>
  ids.map((id, i) => {
    const t = find(model, id)
    move(t, "running")
    t.attempt++
    t.holder = { worker, revision: t.revision, started: i < runNow }
    model.claims[worker]!.push({ id, revision: t.revision })
    return t
  })

export const completed = (model: Model, claim: ModelClaim, result: unknown) => {
  const t = find(model, claim.id)
  if (t.remove) {
    t.status = "deleted"
    t.holder = undefined
  } else {
    move(t, "succeeded")
    t.result = result
  }
}

/** retry_task: retrying, or failed when out of attempts. */
export const retried = (model: Model, claim: ModelClaim) => {
  const t = find(model, claim.id)
  move(t, t.attempt >= t.maxAttempts ? "failed" : "retrying")
}

export const failed = (model: Model, claim: ModelClaim) => move(find(model, claim.id), "failed")

export const cancelled = (t: ModelTask) => move(t, "cancelled")

export const released = (model: Model, claim: ModelClaim) => {
  const t = find(model, claim.id)
  move(t, "queued")
  t.attempt = Math.max(0, t.attempt - 1)
}

/** reap_expired: started → retrying or failed; never started → queued, attempt given back. */
export const reaped = (t: ModelTask) => {
  if (t.holder?.started !== true) {
    move(t, "queued")
    t.attempt = Math.max(0, t.attempt - 1)
    t.returnedUnstarted++
  } else {
    move(t, t.attempt >= t.maxAttempts ? "failed" : "retrying")
  }
}

export const replayed = (t: ModelTask) => {
  move(t, "queued")
  t.attempt = 0
  t.result = null
}
