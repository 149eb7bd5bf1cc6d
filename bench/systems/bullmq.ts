/**
 * BullMQ under benchmark, on Redis, used through its API: `Queue.addBulk()` as the
 * batch API, `Queue.add()` for one job, `new Worker(name, processor, { connection,
 * concurrency })` for the worker.
 *
 * One configuration, its defaults: BullMQ's docs name no throughput setting beyond
 * the worker's `concurrency` (https://docs.bullmq.io/guide/workers/concurrency) and
 * bulk adds; `removeOnComplete` is documented as memory hygiene
 * (https://docs.bullmq.io/guide/workers/auto-removal-of-jobs), `drainDelay` only sets
 * how long an idle worker's blocking poll lasts. Jobs get one attempt by default.
 */
import { once } from "node:events"
import { Queue, Worker } from "bullmq"
import { Redis } from "ioredis"
import type { Payload, System, SystemFactory, Targets } from "./System.ts"

const QUEUE = "noop"

/** ioredis options; BullMQ opens its own connections from them. */
const connectionFor = (redis: Targets["redis"]) => ({
  host: redis.host,
  port: redis.port,
  db: redis.db,
  maxRetriesPerRequest: null
})

const logErrors = (what: string) => (error: Error) => process.stderr.write(`[bullmq] ${what} error: ${error.message}\n`)

const system = (name: string, settings: string, targets: Targets): System => {
  const connection = connectionFor(targets.redis)
  return {
    name,
    settings,
    reset: async () => {
      const redis = new Redis({ ...connection, lazyConnect: true })
      await redis.connect()
      try {
        await redis.flushdb()
      } finally {
        await redis.quit()
      }
    },
    producer: async () => {
      const queue = new Queue<Payload>(QUEUE, { connection })
      queue.on("error", logErrors("queue"))
      await queue.waitUntilReady()
      return {
        addBulk: async (payloads) => {
          await queue.addBulk(payloads.map((data) => ({ name: QUEUE, data })))
        },
        add: async (payload) => {
          await queue.add(QUEUE, payload)
        },
        close: () => queue.close()
      }
    },
    startWorker: async ({ concurrency, onJob }) => {
      const worker = new Worker<Payload>(
        QUEUE,
        async (job) => {
          onJob(job.data)
        },
        { connection, concurrency }
      )
      worker.on("error", logErrors("worker"))
      // "ready" is emitted once both the regular and the blocking connection are up;
      // the main loop (autorun) is already waiting for jobs by then.
      await once(worker, "ready")
      // close(): stops fetching, waits for active jobs, closes both connections.
      return { stop: () => worker.close() }
    },
    remaining: async () => {
      const queue = new Queue(QUEUE, { connection })
      queue.on("error", logErrors("queue"))
      try {
        const counts = await queue.getJobCounts("waiting", "active", "delayed", "prioritized", "waiting-children", "failed")
        return Object.values(counts).reduce((a, b) => a + b, 0)
      } finally {
        await queue.close()
      }
    }
  }
}

/** BullMQ in its default configuration. */
export const factory: SystemFactory = (targets) => [
  system("bullmq", "defaults, concurrency 10", targets)
]
