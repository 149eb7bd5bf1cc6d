/**
 * The runtime's counters and histograms, as effect Metrics: a subscriber of
 * RuntimeEvents, like the log lines. Whatever is in the metric registry is served
 * as Prometheus text (`GET /metrics`) and, with OTEL_ENABLED, exported over OTLP.
 *
 *   taskfiber_tasks_enqueued_total{type,queue}        tasks an enqueue created
 *   taskfiber_tasks_succeeded_total{type,queue}       runs that succeeded
 *   taskfiber_tasks_failed_total{type,queue}          runs that failed (retried or not)
 *   taskfiber_tasks_retried_total{type,queue}         failed runs with a retry scheduled
 *   taskfiber_tasks_dead_lettered_total{type,queue}   tasks that ended failed (no retry left, or permanent)
 *   taskfiber_tasks_cancelled_total{type,queue}       runs stopped by a cancel
 *   taskfiber_task_run_seconds{type,queue}            handler start → outcome written
 *   taskfiber_task_wait_seconds{type,queue}           due (run_at) → claimed, by the database clock
 *   taskfiber_claim_batch_size                        tasks per claim
 *   taskfiber_tasks_reaped_total                      tasks taken back from expired leases
 *   taskfiber_kafka_messages_total{topic}             messages that became tasks (created or found)
 *   taskfiber_kafka_messages_dead_lettered_total{topic}
 *   taskfiber_kafka_consumer_lag{topic,partition}     messages after the last committed batch (0 once the partition is another's)
 *   taskfiber_status_events_published_total           status events the relay published
 *
 * The gauges that need SQL (depth, oldest age, pool, …) are the sampler's.
 *
 * Cost: a settled run is one Map lookup and two synchronous metric updates in its
 * listener (the series of each type and queue are made once).
 */
import { Effect, Layer, Metric } from "effect"
import type { Outcome } from "../domain/Outcome.ts"
import type { RuntimeEvent } from "./RuntimeEvents.ts"
import { RuntimeEvents } from "./RuntimeEvents.ts"

/** Seconds: 1 ms to 15 minutes (JOB_TIMEOUT's default). */
const durationBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900]

/** Tasks per claim: up to CLAIM_BATCH's default and beyond. */
const batchBoundaries = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]

/** The series of one job type in one queue. */
interface Series {
  readonly enqueued: Metric.Counter<number>
  readonly succeeded: Metric.Counter<number>
  readonly failed: Metric.Counter<number>
  readonly retried: Metric.Counter<number>
  readonly deadLettered: Metric.Counter<number>
  readonly cancelled: Metric.Counter<number>
  readonly run: Metric.Histogram<number>
  readonly wait: Metric.Histogram<number>
}

const seriesOf = (type: string, queue: string): Series => {
  const attributes = { type, queue }
  const counter = (name: string, description: string) => Metric.counter(name, { description, attributes, incremental: true })
  return {
    enqueued: counter("taskfiber_tasks_enqueued_total", "Tasks an enqueue created"),
    succeeded: counter("taskfiber_tasks_succeeded_total", "Runs that succeeded"),
    failed: counter("taskfiber_tasks_failed_total", "Runs that failed, retried or not"),
    retried: counter("taskfiber_tasks_retried_total", "Failed runs with a retry scheduled"),
    deadLettered: counter("taskfiber_tasks_dead_lettered_total", "Tasks that ended failed: no retry left, or a permanent error"),
    cancelled: counter("taskfiber_tasks_cancelled_total", "Runs stopped by a cancel"),
    run: Metric.histogram("taskfiber_task_run_seconds", {
      description: "Handler start to outcome written", attributes, boundaries: durationBoundaries
    }),
    wait: Metric.histogram("taskfiber_task_wait_seconds", {
      description: "Due (run_at) to claimed, by the database clock", attributes, boundaries: durationBoundaries
    })
  }
}

const claimBatch = Metric.histogram("taskfiber_claim_batch_size", { description: "Tasks per claim", boundaries: batchBoundaries })
const reaped = Metric.counter("taskfiber_tasks_reaped_total", { description: "Tasks taken back from expired leases", incremental: true })
const published = Metric.counter("taskfiber_status_events_published_total", { description: "Status events the relay published", incremental: true })

/** Starts the subscriber: updates the metrics of the registry in `context` from the hub's events. */
const start = Effect.gen(function*() {
  const events = yield* RuntimeEvents
  const context = yield* Effect.context<never>()
  // By type, then queue: two lookups and no key string made per event.
  const series = new Map<string, Map<string, Series>>()
  const of = (type: string, queue: string): Series => {
    let byQueue = series.get(type)
    if (byQueue === undefined) series.set(type, byQueue = new Map())
    let s = byQueue.get(queue)
    if (s === undefined) byQueue.set(queue, s = seriesOf(type, queue))
    return s
  }
  const topics = new Map<string, { readonly messages: Metric.Counter<number>; readonly deadLettered: Metric.Counter<number> }>()
  const topicOf = (topic: string) => {
    let t = topics.get(topic)
    if (t === undefined) {
      const attributes = { topic }
      topics.set(topic, t = {
        messages: Metric.counter("taskfiber_kafka_messages_total", { description: "Kafka messages that became tasks (created or found)", attributes, incremental: true }),
        deadLettered: Metric.counter("taskfiber_kafka_messages_dead_lettered_total", {
          description: "Kafka messages that made no task (dead letters)", attributes, incremental: true
        })
      })
    }
    return t
  }
  const lags = new Map<string, Metric.Gauge<number>>()
  const settledCounter = (s: Series, outcome: Outcome): Metric.Counter<number> | undefined => {
    switch (outcome) {
      case "succeeded":
        return s.succeeded
      case "cancelled":
        return s.cancelled
      default:
        return undefined
    }
  }
  const listener = (event: RuntimeEvent) => {
    switch (event._tag) {
      case "Enqueued":
        for (const t of event.tasks) if (t.created) of(t.type, t.queue).enqueued.updateUnsafe(1, context)
        return
      case "Claimed": {
        claimBatch.updateUnsafe(event.tasks.length, context)
        for (const t of event.tasks) if (t.waitedMs !== undefined) of(t.type, t.queue).wait.updateUnsafe(t.waitedMs / 1000, context)
        return
      }
      case "Settled": {
        const s = of(event.task.type, event.task.queue)
        if (event.runMs > 0) s.run.updateUnsafe(event.runMs / 1000, context)
        if (event.outcome === "retrying" || event.outcome === "failed") {
          s.failed.updateUnsafe(1, context)
          ;(event.outcome === "retrying" ? s.retried : s.deadLettered).updateUnsafe(1, context)
          return
        }
        settledCounter(s, event.outcome)?.updateUnsafe(1, context)
        return
      }
      case "Reaped":
        reaped.updateUnsafe(event.tasks.length, context)
        return
      case "IngressBatchCommitted": {
        topicOf(event.topic).messages.updateUnsafe(event.created + event.existing, context)
        const key = `${event.topic}\u0000${event.partition}`
        let lag = lags.get(key)
        if (lag === undefined) {
          lags.set(key, lag = Metric.gauge("taskfiber_kafka_consumer_lag", {
            description: "Messages of the partition after its last committed batch",
            attributes: { topic: event.topic, partition: String(event.partition) }
          }))
        }
        lag.updateUnsafe(event.lag, context)
        return
      }
      case "IngressJoined": {
        // A partition given to another instance is its to report now: this one's reads 0.
        const assigned = new Set(event.partitions.map((p) => `${p.topic}\u0000${p.partition}`))
        for (const [key, lag] of lags) if (!assigned.has(key)) lag.updateUnsafe(0, context)
        return
      }
      case "MessageDeadLettered":
        topicOf(event.topic).deadLettered.updateUnsafe(1, context)
        return
      case "RelayPublished":
        published.updateUnsafe(event.count, context)
        return
      default:
        return
    }
  }
  yield* events.subscribe(
    ["Enqueued", "Claimed", "Settled", "Reaped", "IngressBatchCommitted", "IngressJoined", "MessageDeadLettered", "RelayPublished"],
    listener
  )
})

/** The runtime's metrics for as long as the layer lives (in the metric registry of its context). */
export const layer: Layer.Layer<never, never, RuntimeEvents> = Layer.effectDiscard(start)
