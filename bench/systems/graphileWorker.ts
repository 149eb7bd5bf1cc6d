/**
 * graphile-worker under benchmark, used through its library API: `run()` with a
 * `taskList` for the worker, `makeWorkerUtils()` / `addJobs()` for enqueueing,
 * `runMigrations()` for the schema.
 *
 * Two configurations:
 *   graphile-worker       its defaults (no local queue, unbatched completions, pool
 *                         of 10, the `maxPoolSize` default), concurrency from the harness;
 *   graphile-worker-fast  the batching settings of https://worker.graphile.org/docs/performance
 *                         (`localQueue: { size: 500 }`, `completeJobBatchDelay: 0`,
 *                         `failJobBatchDelay: 0`), with a pool of max(10, concurrency + 2)
 *                         as the `maxPoolSize` option's doc recommends.
 *
 * The worker is given its own `pg.Pool` (of the size graphile-worker would have made)
 * rather than a connection string: with unbatched completions graphile-worker
 * completes each job fire-and-forget, and `runner.stop()` resolves, and ends a pool it
 * made, while the last completions may still wait for a connection, which leaves those
 * jobs locked. Owning the pool lets `stop()` wait until every query has returned.
 */
import { EventEmitter } from "node:events"
import { setTimeout as delay } from "node:timers/promises"
import { Logger, makeWorkerUtils, run, runMigrations } from "graphile-worker"
import type { RunnerOptions, WorkerEvents } from "graphile-worker"
import pg from "pg"
import { recreateDatabase } from "./pgAdmin.ts"
import type { Payload, System, SystemFactory } from "./System.ts"

const TASK = "noop"

/** Drops debug and info; errors and warnings still reach stderr. */
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") process.stderr.write(`[graphile-worker] ${level}: ${message}\n`)
})

interface Config {
  /** The worker's pool size. */
  readonly poolSize: (concurrency: number) => number
  readonly preset: NonNullable<RunnerOptions["preset"]>
}

/** A pool with the error handlers graphile-worker asks for (it warns without them). */
const makePool = (url: string, max: number): pg.Pool => {
  const pool = new pg.Pool({ connectionString: url, max })
  const log = (error: Error) => process.stderr.write(`[graphile-worker] pg error: ${error.message}\n`)
  pool.on("error", log)
  pool.on("connect", (client) => client.on("error", log))
  return pool
}

/** Resolves once no query is running or waiting for a connection, twice in a row 5 ms apart. */
const poolIdle = async (pool: pg.Pool, timeoutMs: number): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  const idle = () => pool.waitingCount === 0 && pool.idleCount === pool.totalCount
  for (;;) {
    if (idle()) {
      await delay(5)
      if (idle()) return
    } else {
      await delay(1)
    }
    if (Date.now() > deadline) throw new Error("graphile-worker: queries still running after stop()")
  }
}

/**
 * Resolves once the runner's LISTEN connection has subscribed to `jobs:insert`. The
 * `pool:listen:success` event fires just before the LISTEN statement is sent on that
 * client; a query queued on the same client after it completes only once LISTEN has.
 */
const listening = (events: WorkerEvents): Promise<void> =>
  new Promise((resolve, reject) => {
    events.once("pool:listen:success", ({ client }) => {
      queueMicrotask(() => {
        client.query("select 1").then(() => resolve(), reject)
      })
    })
  })

const system = (
  name: string,
  settings: string,
  url: string,
  config: Config
): System => ({
  name,
  settings,
  reset: async () => {
    await recreateDatabase(url)
    await runMigrations({ connectionString: url, logger })
  },
  producer: async () => {
    const utils = await makeWorkerUtils({ connectionString: url, logger })
    return {
      addBulk: async (payloads) => {
        await utils.addJobs(payloads.map((payload) => ({ identifier: TASK, payload, maxAttempts: 1 })))
      },
      add: async (payload) => {
        await utils.addJob(TASK, payload, { maxAttempts: 1 })
      },
      close: async () => {
        await utils.release()
      }
    }
  },
  startWorker: async ({ concurrency, onJob }) => {
    const pool = makePool(url, config.poolSize(concurrency))
    const events: WorkerEvents = new EventEmitter()
    const ready = listening(events)
    const runner = await run({
      pgPool: pool,
      concurrency,
      logger,
      events,
      preset: config.preset,
      taskList: { [TASK]: (payload) => onJob(payload as Payload) }
    }).catch(async (error: unknown) => {
      await pool.end()
      throw error
    })
    await ready
    return {
      stop: async () => {
        // Stops taking jobs, returns the local queue's jobs to the table, waits for
        // running tasks and flushes batched completions, releases the LISTEN client.
        await runner.stop()
        // Unbatched completions are not awaited by stop(): wait for them here.
        try {
          await poolIdle(pool, 30_000)
        } finally {
          await pool.end()
        }
      }
    }
  },
  remaining: async () => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      // Completed jobs are deleted; what is left is queued, locked or failed.
      const { rows } = await client.query<{ n: number }>("select count(*)::int as n from graphile_worker.jobs")
      return rows[0]!.n
    } finally {
      await client.end()
    }
  }
})

/** graphile-worker in its default configuration and in its documented high-throughput one. */
export const factory: SystemFactory = (targets) => [
  system(
    "graphile-worker",
    "defaults (pool 10, no localQueue, unbatched completions), concurrency 10",
    targets.databaseUrl,
    { poolSize: () => 10, preset: {} }
  ),
  system(
    "graphile-worker-fast",
    "concurrency 10, pool 12, localQueue 500, completeJobBatchDelay 0, failJobBatchDelay 0",
    targets.databaseUrl,
    {
      // "10 or concurrentJobs + 2, whichever is larger" (the maxPoolSize option's doc).
      poolSize: (concurrency) => Math.max(10, concurrency + 2),
      preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } }
    }
  )
]
