/**
 * pg-boss under benchmark, used through its API: `boss.start()` installs the schema,
 * `createQueue()` declares the queue (required since pg-boss 10), `insert()` is the
 * batch API, `send()` the single one, `work()` the worker.
 *
 * pg-boss 12 expresses worker concurrency as `work()`'s `localConcurrency`: that many
 * polling loops in the process, each fetching up to `batchSize` jobs and handing them
 * to the handler as one array.
 *
 * Two configurations:
 *   pg-boss       `new PgBoss(url)` and `work()` with its defaults (batchSize 1,
 *                 pollingIntervalSeconds 2), except localConcurrency = concurrency;
 *   pg-boss-fast  the throughput and latency options of https://pgboss.io/api/workers:
 *                 batchSize 100, pollingIntervalSeconds 0.5 (the minimum it accepts),
 *                 burstWhenBatchFull (fetch again at once while batches come back full),
 *                 and LISTEN/NOTIFY dispatch (`useListenNotify` on the instance,
 *                 `notify: true` on the queue).
 *
 * The queue is created with `retryLimit: 0` (one attempt; the default is 2 retries).
 */
import { PgBoss } from "pg-boss"
import type { ConstructorOptions, Queue, WorkOptions } from "pg-boss"
import pg from "pg"
import { recreateDatabase } from "./pgAdmin.ts"
import type { Payload, System, SystemFactory } from "./System.ts"

const QUEUE = "noop"

interface Config {
  readonly boss: (url: string) => PgBoss
  readonly queue: Omit<Queue, "name">
  readonly work: (concurrency: number) => WorkOptions
}

/** Starts an instance; its errors and warnings go to stderr, one line each. */
const started = async (config: Config, url: string): Promise<PgBoss> => {
  const boss = config.boss(url)
  boss.on("error", (error) => process.stderr.write(`[pg-boss] error: ${error.message}\n`))
  boss.on("warning", (warning) => process.stderr.write(`[pg-boss] warning: ${warning.message}\n`))
  await boss.start()
  return boss
}

const system = (name: string, settings: string, url: string, config: Config, maxJobs?: number): System => ({
  name,
  settings,
  ...(maxJobs === undefined ? {} : { maxJobs }),
  reset: async () => {
    await recreateDatabase(url)
    // start() installs the schema.
    const boss = await started(config, url)
    try {
      await boss.createQueue(QUEUE, config.queue)
    } finally {
      await boss.stop()
    }
  },
  producer: async () => {
    const boss = await started(config, url)
    return {
      addBulk: async (payloads) => {
        await boss.insert(QUEUE, payloads.map((data) => ({ data })))
      },
      add: async (payload) => {
        await boss.send(QUEUE, payload)
      },
      close: () => boss.stop({ graceful: true, close: true })
    }
  },
  startWorker: async ({ concurrency, onJob }) => {
    const boss = await started(config, url)
    // work() resolves once its polling loops are started; each fetches at once.
    await boss.work<Payload>(QUEUE, config.work(concurrency), async (jobs) => {
      for (const job of jobs) onJob(job.data)
    })
    // stop(): stops polling, waits for running handlers (and their completions),
    // then closes the pool.
    return { stop: () => boss.stop({ graceful: true, close: true }) }
  },
  remaining: async () => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      // Completed jobs stay in the table (deleteAfterSeconds, 7 days by default).
      const { rows } = await client.query<{ n: number }>(
        "select count(*)::int as n from pgboss.job where name = $1 and state <> 'completed'",
        [QUEUE]
      )
      return rows[0]!.n
    } finally {
      await client.end()
    }
  }
})

const defaults: Config = {
  boss: (url) => new PgBoss(url),
  queue: { retryLimit: 0 },
  work: (concurrency) => ({ localConcurrency: concurrency })
}

const fastInstance: ConstructorOptions = { useListenNotify: true }

const fast: Config = {
  boss: (url) => new PgBoss({ connectionString: url, ...fastInstance }),
  queue: { retryLimit: 0, notify: true },
  work: (concurrency) => ({
    localConcurrency: concurrency,
    batchSize: 100,
    pollingIntervalSeconds: 0.5,
    burstWhenBatchFull: true
  })
}

/** pg-boss in its default configuration and in its documented high-throughput one. */
export const factory: SystemFactory = (targets) => [
  // 1 job per loop per 2 s: 20,000 jobs would take over an hour; 200 take 20 s.
  system("pg-boss", "defaults (batchSize 1, polling 2 s), localConcurrency 10", targets.databaseUrl, defaults, 200),
  system(
    "pg-boss-fast",
    "localConcurrency 10, batchSize 100, polling 0.5 s (minimum), burstWhenBatchFull, LISTEN/NOTIFY (useListenNotify + queue notify)",
    targets.databaseUrl,
    fast
  )
]
