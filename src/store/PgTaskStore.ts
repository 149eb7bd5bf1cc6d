/**
 * The PostgreSQL implementation of the TaskStore port: each operation one
 * parameterised statement, most a call of a function in `schema/functions/` (the
 * alternatives measured for each are recorded beside its SQL).
 */
import { Config, Effect, Layer, Option } from "effect"
import type { UnstorableValue } from "../domain/Errors.ts"
import * as StoredJson from "../domain/StoredJson.ts"
import { SqlClient } from "effect/sql/SqlClient"
import { mapSqlError } from "./DatabaseError.ts"
import { defaultAgeing } from "../domain/Priority.ts"
import { type EnqueueRequest, isUuid } from "../domain/Task.ts"
import type { TaskStatus } from "../domain/TaskStatus.ts"
import { type Claim, type ClaimedRow, type TaskEventRow, type TaskRow, toClaimedTask, toTask, toTaskEvent } from "./TaskRow.ts"
import * as Cursor from "./Cursor.ts"
import { newTaskId } from "./TaskId.ts"
import { encodeRows, InvalidEnqueueRequest, toRows } from "./EnqueueRequest.ts"
import type { DatabaseError } from "./DatabaseError.ts"
import { type EnqueueResult, type JsonValue, maxAttemptsConfig, TaskStore } from "./TaskStore.ts"
import { RuntimeEvents } from "../observability/RuntimeEvents.ts"

/** The store's settings. */
export interface StoreOptions {
  /** The attempt limit of a request that names none (see {@link maxAttemptsConfig}). */
  readonly maxAttempts: number
}

const make = (options: StoreOptions) => Effect.gen(function*() {
  const sql = yield* SqlClient
  // Every enqueue passes through here: with the runtime's event hub present, each
  // statement that returned is told as Enqueued (metrics count by type and queue).
  const events = Option.getOrUndefined(yield* Effect.serviceOption(RuntimeEvents))
  const told = (rows: ReadonlyArray<{ readonly type: string; readonly queue: string }>, results: ReadonlyArray<EnqueueResult>) => {
    if (events !== undefined && events.observed("Enqueued")) {
      events.emit({ _tag: "Enqueued", tasks: rows.map((r, i) => ({ type: r.type, queue: r.queue, created: results[i]!.created })) })
    }
    return results
  }
  const defaults = { newId: newTaskId, maxAttempts: options.maxAttempts }
  const json = (value: unknown) => JSON.stringify(value === undefined ? null : value)
  /** The jsonb text of a value a run stores, or why it cannot be stored; never throws. */
  const textOf = (value: JsonValue, what: UnstorableValue["what"]): string | UnstorableValue => {
    const e = value instanceof StoredJson.EncodedJson ? value : StoredJson.encode(value, what)
    return e instanceof StoredJson.EncodedJson ? e.text : e
  }
  const encoded = (value: JsonValue, what: UnstorableValue["what"]): Effect.Effect<string, UnstorableValue> => {
    const text = textOf(value, what)
    return typeof text === "string" ? Effect.succeed(text) : Effect.fail(text)
  }
  const revisionOf = (claim: Claim) => Number.isInteger(claim.revision) ? claim.revision : -1
  const tasks = (rows: ReadonlyArray<TaskRow>) => rows.map(toTask)
  const first = (rows: ReadonlyArray<TaskRow>) => Option.map(Option.fromNullishOr(rows[0]), toTask)

  const enqueueMany = (requests: ReadonlyArray<EnqueueRequest.Encoded>) =>
    Effect.gen(function*() {
      if (requests.length === 0) return []
      const rows = toRows(requests, defaults)
      if (rows instanceof InvalidEnqueueRequest) return yield* rows
      const text = encodeRows(rows)
      if (text instanceof InvalidEnqueueRequest) return yield* text
      // No rows: every request created the task it names (see schema/functions/enqueue.sql), the
      // common case, answered without a row per task to send and decode.
      const result = yield* sql<{ ord: number; id: string | null; created: boolean }>`
        select ord, id, created from taskfiber.enqueue_quiet(${text}::jsonb)`
      if (result.length === 0) return told(rows, rows.map((r) => ({ id: r.id, created: true })))
      const missing = result.find((r) => r.id === null)
      if (missing) return yield* Effect.die(new Error(`taskfiber.enqueue_quiet found no task for request #${missing.ord - 1}`))
      return told(rows, result.map((r) => ({ id: r.id as string, created: r.created === true })))
    }).pipe(mapSqlError, Effect.withSpan("TaskStore.enqueueMany", { attributes: { count: requests.length } }))

  return TaskStore.of({
    enqueueMany,
    enqueue: (request) =>
      Effect.map(enqueueMany([request]), (results) => results[0] as EnqueueResult).pipe(Effect.withSpan("TaskStore.enqueue")),

    // One statement, so one snapshot: the task and its history always agree (two
    // reads could see a status change between them).
    get: (id) =>
      Effect.gen(function*() {
        if (!isUuid(id)) return Option.none()
        const rows = yield* sql<TaskRow & { readonly events: ReadonlyArray<Omit<TaskEventRow, "at"> & { readonly at: string }> }>`
          select t.*,
                 coalesce((select json_agg(e order by e.seq) from taskfiber.task_events e where e.task_id = t.id), '[]') as events
            from taskfiber.tasks t where t.id = ${id}::uuid`
        const row = rows[0]
        if (row === undefined) return Option.none()
        const events = row.events.map((e) => toTaskEvent({ ...e, at: new Date(e.at) }))
        return Option.some({ task: toTask(row), events })
      }).pipe(mapSqlError, Effect.withSpan("TaskStore.get")),

    list: (options = {}) =>
      Effect.gen(function*() {
        const limit = Math.min(500, Math.max(1, Math.floor(options.limit ?? 50)))
        // The cursor is the last task's id: pages follow the primary key, so no index
        // beyond it serves `list`.
        const after = yield* Cursor.decode(options.cursor, isUuid)
        const desc = options.order === "desc"
        const rows = yield* sql<TaskRow>`
          select * from taskfiber.tasks
          where (${options.status ?? null}::taskfiber.task_status is null or status = ${options.status ?? null}::taskfiber.task_status)
            and (${options.queue ?? null}::text is null or queue = ${options.queue ?? null})
            and (${options.type ?? null}::text is null or type = ${options.type ?? null})
            and (${after ?? null}::uuid is null or ${desc ? sql`id < ${after ?? null}::uuid` : sql`id > ${after ?? null}::uuid`})
          order by ${desc ? sql`id desc` : sql`id`}
          limit ${limit + 1}`
        const page = rows.slice(0, limit)
        const last = page[page.length - 1]
        return rows.length > limit && last
          ? { tasks: tasks(page), nextCursor: Cursor.encode(last.id) }
          : { tasks: tasks(page) }
      }).pipe(mapSqlError, Effect.withSpan("TaskStore.list")),

    claim: (o) => {
      const ageing = o.ageing ?? defaultAgeing
      return sql<TaskRow>`
        select * from taskfiber.claim(${o.workerId}, ${o.queues ? [...o.queues] : null}::text[], ${o.limit},
          ${Math.round(o.leaseMs)}, ${ageing.stepSeconds}, ${ageing.maxBoost}, ${o.asyncCommit === true},
          ${o.types ? [...o.types] : null}::text[], ${o.runNow ?? null}::integer)`.pipe(
        Effect.map(tasks),
        mapSqlError,
        Effect.withSpan("TaskStore.claim", { attributes: { limit: o.limit } })
      )
    },

    // Fourteen columns instead of twenty-six: the six timestamps were most of the
    // client's parsing work per claimed task (and of the server's formatting).
    claimToRun: (o) => {
      const ageing = o.ageing ?? defaultAgeing
      return sql<ClaimedRow>`
        select id, queue, type, payload, attempt, max_attempts, checkpoint, remove_on_complete, revision,
               handler_started, not handler_started and returned_unstarted > 0 as record_start_first, traceparent,
               priority, date_part('epoch', started_at - run_at) * 1000 as waited_ms
          from taskfiber.claim(${o.workerId}, ${o.queues ? [...o.queues] : null}::text[], ${o.limit},
            ${Math.round(o.leaseMs)}, ${ageing.stepSeconds}, ${ageing.maxBoost}, ${o.asyncCommit === true},
            ${o.types ? [...o.types] : null}::text[], ${o.runNow ?? null}::integer)`.pipe(
        Effect.map((rows) => rows.map(toClaimedTask)),
        mapSqlError,
        Effect.withSpan("TaskStore.claimToRun", { attributes: { limit: o.limit } })
      )
    },

    extendLeases: (workerId, leaseMs, claims) =>
      claims.length === 0
        ? Effect.succeed([])
        : sql<{ extend_leases: string }>`
        select taskfiber.extend_leases(${workerId}, ${Math.round(leaseMs)}, ${claims.map((c) => c.id)}::uuid[],
          ${claims.map(revisionOf)}::integer[], ${claims.map((c) => c.started === true)}::boolean[])`.pipe(
          Effect.map((rows) => rows.map((r) => r.extend_leases)),
          mapSqlError,
          Effect.withSpan("TaskStore.extendLeases")
        ),

    // The items' JSON is put together from each result's encoded text: encoding
    // the whole batch again would repeat the work the runs did, and a value that
    // cannot be stored fails here, before anything is sent.
    // The items' JSON is put together from each result's encoded text: encoding
    // the whole batch again would repeat the work the runs did, and a value that
    // cannot be stored fails here, before anything is sent. A plain loop: this
    // runs for every task a worker completes.
    complete: (workerId, items) =>
      items.length === 0
        ? Effect.succeed([])
        : Effect.suspend((): Effect.Effect<ReadonlyArray<Claim>, DatabaseError | UnstorableValue> => {
          let text = "["
          for (let i = 0; i < items.length; i++) {
            const item = items[i]!
            const result = textOf(item.result, "result")
            if (typeof result !== "string") return Effect.fail(result)
            const trace = item.runTraceparent === undefined ? "" : `,"run_traceparent":${JSON.stringify(item.runTraceparent)}`
            text += `${i === 0 ? "" : ","}{"id":${JSON.stringify(item.id)},"revision":${revisionOf(item)},"result":${result},"remove":${item.remove === true}${trace}}`
          }
          return sql<Claim>`select id, revision from taskfiber.complete_tasks(${workerId}, ${text + "]"}::jsonb)`.pipe(mapSqlError)
        }).pipe(Effect.withSpan("TaskStore.complete", { attributes: { count: items.length } })),

    retry: (workerId, claim, error, delayMs) =>
      Effect.suspend(() => sql<TaskRow>`select * from taskfiber.retry_task(${workerId}, ${claim.id}::uuid, ${revisionOf(claim)}, ${json(error)}::jsonb, ${Math.max(0, Math.round(delayMs))}, ${claim.runTraceparent ?? null})`)
        .pipe(Effect.map(first), mapSqlError, Effect.withSpan("TaskStore.retry")),

    fail: (workerId, claim, error) =>
      Effect.suspend(() => sql<TaskRow>`select * from taskfiber.fail_task(${workerId}, ${claim.id}::uuid, ${revisionOf(claim)}, ${json(error)}::jsonb, ${claim.runTraceparent ?? null})`)
        .pipe(Effect.map(first), mapSqlError, Effect.withSpan("TaskStore.fail")),

    cancel: (ids, reason) =>
      ids.length === 0
        ? Effect.succeed([])
        : sql<{ id: string; previous_status: TaskStatus }>`
            select * from taskfiber.cancel_tasks(${[...ids]}::uuid[], ${reason})`.pipe(
          Effect.map((rows) => rows.map((r) => ({ id: r.id, previousStatus: r.previous_status }))),
          mapSqlError,
          Effect.withSpan("TaskStore.cancel")
        ),

    cancelClaimed: (workerId, claim, reason) =>
      sql<{ ok: boolean }>`select taskfiber.cancel_claimed(${workerId}, ${claim.id}::uuid, ${revisionOf(claim)}, ${reason}, ${claim.runTraceparent ?? null}) as ok`.pipe(
        Effect.map((rows) => rows[0]?.ok === true),
        mapSqlError,
        Effect.withSpan("TaskStore.cancelClaimed")
      ),

    release: (workerId, claims) =>
      claims.length === 0
        ? Effect.succeed([])
        : sql<{ release_tasks: string }>`
        select taskfiber.release_tasks(${workerId}, ${claims.map((c) => c.id)}::uuid[], ${claims.map(revisionOf)}::integer[])`.pipe(
          Effect.map((rows) => rows.map((r) => r.release_tasks)),
          mapSqlError,
          Effect.withSpan("TaskStore.release")
        ),

    reapExpired: (limit) =>
      sql<TaskRow>`select * from taskfiber.reap_expired(${limit})`.pipe(
        Effect.map(tasks),
        mapSqlError,
        Effect.withSpan("TaskStore.reapExpired")
      ),

    replay: (id) =>
      sql<TaskRow>`select * from taskfiber.replay_task(${id}::uuid)`.pipe(
        Effect.map(first),
        mapSqlError,
        Effect.withSpan("TaskStore.replay")
      ),

    recordProgress: (workerId, claim, update) =>
      Effect.gen(function*() {
        const progress = "progress" in update ? yield* encoded(update.progress, "progress") : null
        const checkpoint = "checkpoint" in update ? yield* encoded(update.checkpoint, "checkpoint") : null
        const rows = yield* sql<{ ok: boolean }>`
          select taskfiber.record_progress(${workerId}, ${claim.id}::uuid, ${revisionOf(claim)},
            ${progress}::jsonb, ${checkpoint}::jsonb) as ok`.pipe(mapSqlError)
        return rows[0]?.ok === true
      }).pipe(Effect.withSpan("TaskStore.recordProgress")),

    recordStart: (workerId, claim) =>
      sql<{ ok: boolean }>`select taskfiber.record_start(${workerId}, ${claim.id}::uuid, ${revisionOf(claim)}) as ok`.pipe(
        Effect.map((rows) => rows[0]?.ok === true),
        mapSqlError,
        Effect.withSpan("TaskStore.recordStart")
      ),

    statuses: (ids) =>
      ids.length === 0
        ? Effect.succeed([])
        : sql<{ id: string; status: TaskStatus; revision: number }>`
        select id, status, revision from taskfiber.tasks where id = any(${[...ids]}::uuid[])`.pipe(
          mapSqlError,
          Effect.withSpan("TaskStore.statuses")
        ),

    // A paused queue's tasks are never next (schema/functions/queues.sql): each would
    // wake the dispatcher at its run_at, then again at once, claim after claim, while
    // the look-back window still reaches it (dueWithinMs: 50 ms and more), each claim
    // skipping it. The paused set is read once (an initplan), and only when a task
    // passes the other conditions: with no queue paused the plan and its cost are the
    // same (1.2–1.3 ms over 22,000 queued tasks of two queues, the index range of both
    // read either way).
    msUntilNextDue: ({ dueWithinMs = 0, queues, types } = {}) =>
      sql<{ ms: number | null }>`
        select (extract(epoch from min(run_at) - clock_timestamp()) * 1000)::float8 as ms
        from taskfiber.tasks
        where status in ('queued', 'retrying')
          and run_at > now() - ${Math.max(0, dueWithinMs)}::float8 * interval '1 millisecond'
          and (${queues ? [...queues] : null}::text[] is null or queue = any(${queues ? [...queues] : null}::text[]))
          and queue <> all(array(select p.queue from taskfiber.paused_queues p))
          and (${types ? [...types] : null}::text[] is null or type = any(${types ? [...types] : null}::text[]))`.pipe(
        Effect.map((rows) => Option.fromNullishOr(rows[0]?.ms)),
        mapSqlError,
        Effect.withSpan("TaskStore.msUntilNextDue")
      ),

    stats: Effect.gen(function*() {
      const depth = yield* sql<{ queue: string; status: TaskStatus; priority: number; count: number }>`
        select queue, status, priority, count(*)::int as count
        from taskfiber.tasks group by queue, status, priority order by queue, status, priority desc`
      const oldest = yield* sql<{ queue: string; age_seconds: number }>`
        select queue, extract(epoch from now() - min(run_at))::float8 as age_seconds
        from taskfiber.tasks where status in ('queued', 'retrying') and run_at <= now()
        group by queue order by queue`
      return {
        depth,
        oldestQueued: oldest.map((r) => ({ queue: r.queue, ageSeconds: r.age_seconds }))
      }
    }).pipe(mapSqlError, Effect.withSpan("TaskStore.stats"))
  })
})

/** The PostgreSQL task store with these settings. */
export const layerWith = (options: StoreOptions): Layer.Layer<TaskStore, never, SqlClient> => Layer.effect(TaskStore, make(options))

/**
 * The PostgreSQL task store, its attempt limit read from `RETRY_MAX_ATTEMPTS` once,
 * when the layer is built.
 *
 * The store applies the default, not the job registry nor the supervisor: every
 * enqueue — typed (`Tasks.enqueue`), by job name (`Tasks.enqueueByName`, the CLI),
 * or a producer calling `enqueue` with no registry at all — passes through here,
 * and the runner obeys only the task's `max_attempts`. A job's own limit travels in
 * its requests; one that sets none leaves it to this.
 */
export const layer: Layer.Layer<TaskStore, Config.ConfigError, SqlClient> = Layer.unwrap(
  Effect.map(maxAttemptsConfig, (maxAttempts) => layerWith({ maxAttempts }))
)
