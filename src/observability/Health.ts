/**
 * Health: the latest sample judged by HealthPolicy, with the Kafka consumer's
 * state from the runtime's events, as one report an operator (or a load
 * balancer) reads. The report is computed when asked, from what is known then, so
 * a consumer that just lost its broker shows at once, not at the next sample.
 *
 * A change of status is logged once when it happens, not at every sample: Warn
 * when it worsens, Info when it recovers, naming the findings. The thresholds come
 * from `HEALTH_*` variables (three values each, `degraded,unhealthy,critical`),
 * checked when the layer starts, and a layer option overrides them.
 */
import { Clock, Config, Context, Duration, Effect, Layer, Option, PubSub, Queue, Scope } from "effect"
import type { PgClient } from "@effect/sql-pg"
import * as DurationText from "../domain/DurationText.ts"
import * as HealthPolicy from "../domain/HealthPolicy.ts"
import type { HealthReport, KafkaSample, Thresholds } from "../domain/HealthPolicy.ts"
import * as KafkaConfig from "../ingress/kafka/KafkaConfig.ts"
import * as BackgroundLoop from "../runtime/BackgroundLoop.ts"
import { InvalidSetting } from "../runtime/RuntimeConfig.ts"
import { type RuntimeEvent, RuntimeEvents } from "./RuntimeEvents.ts"
import * as Sampler from "./Sampler.ts"

/** A report, with when its sample was taken (the database clock; null before any). */
export interface Report extends HealthReport {
  readonly sampledAt: Date | null
}

/** The health service. */
export class Health extends Context.Service<Health, {
  /** The latest sample judged now (see module doc). */
  readonly report: Effect.Effect<Report>
  readonly thresholds: Thresholds
}>()("taskfiber/Health") {}

/** A threshold setting's duration, in ms. */
const durationMs = (text: string): number | undefined => {
  const d = DurationText.parse(text)
  return d === undefined ? undefined : Duration.toMillis(d)
}

/**
 * The thresholds from the `HEALTH_*` variables (HealthPolicy.settings), each unset
 * one at its default; a malformed one is an {@link InvalidSetting} naming it.
 */
export const thresholdsConfig: Effect.Effect<Thresholds, InvalidSetting | Config.ConfigError> = Effect.gen(function*() {
  const out: Record<string, HealthPolicy.Levels> = {}
  for (const key of Object.keys(HealthPolicy.settings) as Array<keyof Thresholds>) {
    const { variable } = HealthPolicy.settings[key]
    const text = yield* Config.option(Config.String(variable))
    if (Option.isNone(text) || text.value.trim() === "") {
      out[key] = HealthPolicy.defaults[key]
      continue
    }
    const levels = HealthPolicy.parseLevels(text.value, key, durationMs)
    if (typeof levels === "string") return yield* new InvalidSetting({ setting: variable, value: text.value, reason: levels })
    out[key] = levels
  }
  return out as unknown as Thresholds
})

/** What {@link layer} takes beyond the environment. */
export interface HealthOptions {
  /** Over the `HEALTH_*` variables' thresholds. */
  readonly thresholds?: Partial<Thresholds>
  /** Whether the runtime consumes Kafka (its checks judged); absent: whether `KAFKA_BROKERS` is set. */
  readonly kafka?: boolean
}

/** The consumer's state, kept from the runtime's events. */
interface KafkaState {
  joined: boolean
  /** `topic:partition` → lag after its last committed batch. */
  lag: Map<string, number>
  partitions: number
  /** Since when it has been out of its group (this process's clock, ms). */
  outSince: number
  reason: string | undefined
}

const partitionKey = (topic: string, partition: number) => `${topic}:${partition}`

/** The checks of `report` that are not healthy, as a log line lists them. */
const named = (report: HealthReport): string =>
  report.findings.filter((f) => f.status !== "HEALTHY").map((f) => `${f.check} ${f.status}: ${f.message}`).join("; ")

/** How long a starting consumer may take to join its group before it counts as out of it: kafkajs's rebalance timeout. */
const firstJoinGraceMs = 60_000

/**
 * Health over a sampler the context provides (shared with whatever else reads it).
 */
export const layerFrom = (options: HealthOptions = {}): Layer.Layer<Health, InvalidSetting | Config.ConfigError, Sampler.Sampler | RuntimeEvents> =>
  Layer.effect(Health, Effect.gen(function*() {
    const thresholds: Thresholds = { ...(yield* thresholdsConfig), ...options.thresholds }
    const kafkaOn = options.kafka ?? Option.isSome(yield* KafkaConfig.config)
    const sampler = yield* Sampler.Sampler
    const events = yield* RuntimeEvents
    const scope = yield* Effect.scope
    const signal = yield* Queue.sliding<void>(1)
    const kafka: KafkaState = { joined: false, lag: new Map(), partitions: 0, outSince: Date.now(), reason: undefined }
    // A consumer that never joined yet is joining, not out of its group, for a
    // first join's time (kafkajs's rebalance timeout): no alarm at every start.
    const startedAt = Date.now()
    let everJoined = false

    if (kafkaOn) {
      yield* events.subscribe(["IngressJoined", "IngressDisconnected", "IngressBatchCommitted"], (event: RuntimeEvent) => {
        switch (event._tag) {
          case "IngressJoined": {
            const assigned = new Set(event.partitions.map((p) => partitionKey(p.topic, p.partition)))
            kafka.joined = true
            everJoined = true
            kafka.partitions = assigned.size
            kafka.reason = undefined
            for (const key of kafka.lag.keys()) if (!assigned.has(key)) kafka.lag.delete(key)
            break
          }
          case "IngressDisconnected":
            if (kafka.joined) kafka.outSince = Date.now()
            kafka.joined = false
            kafka.reason = event.reason
            break
          case "IngressBatchCommitted":
            kafka.lag.set(partitionKey(event.topic, event.partition), event.lag)
            return
          default:
            return
        }
        Queue.offerUnsafe(signal, undefined)
      }).pipe(Effect.provideService(Scope.Scope, scope))
    }

    const kafkaSample = (now: number): KafkaSample => ({
      ...(!everJoined && !kafka.joined && now - startedAt < firstJoinGraceMs ? { joining: true } : {}),
      joined: kafka.joined,
      partitions: kafka.partitions,
      lag: [...kafka.lag.values()].reduce((n, l) => n + l, 0),
      disconnectedMs: kafka.joined ? 0 : Math.max(0, now - kafka.outSince),
      ...(kafka.reason === undefined ? {} : { reason: kafka.reason })
    })

    const intervalMs = Duration.toMillis(sampler.config.interval)
    const report: Effect.Effect<Report> = Effect.gen(function*() {
      // Before the first sample has been tried, wait for it (bounded: a sample's
      // statements time out).
      yield* sampler.started
      const latest = yield* sampler.latest
      const lastError = yield* sampler.lastError
      if (Option.isNone(latest)) {
        return { ...HealthPolicy.unreachable(Option.getOrElse(lastError, () => "no sample taken yet")), sampledAt: null }
      }
      const now = yield* Clock.currentTimeMillis
      const { sample, sampledAt, takenAtMillis } = latest.value
      const assessed = HealthPolicy.assess({
        ...sample,
        ...(kafkaOn ? { kafka: kafkaSample(Date.now()) } : {}),
        age: { ms: now - takenAtMillis, intervalMs, ...(Option.isSome(lastError) ? { lastError: lastError.value } : {}) }
      }, thresholds)
      return { ...assessed, sampledAt }
    })

    // Status changes, logged once each: judged after every sample and every change
    // of the consumer's membership, and at least once an interval (a sampler that
    // stopped makes the sample old, itself a finding).
    let logged: HealthReport = { status: "HEALTHY", findings: [], unmeasured: [] }
    const judge = Effect.gen(function*() {
      const now = yield* report
      const before = logged
      if (now.status === before.status) {
        logged = now
        return
      }
      logged = now
      const change = `health ${before.status} → ${now.status}`
      if (HealthPolicy.severity(now.status) > HealthPolicy.severity(before.status)) {
        yield* Effect.logWarning(`${change}: ${named(now)}`)
      } else {
        const still = named(now)
        yield* Effect.logInfo(`${change}${still === "" ? `: recovered ${named(before)}` : `: still ${still}`}`)
      }
    })
    const samples = yield* sampler.samples
    yield* Effect.forkIn(Effect.forever(Effect.andThen(PubSub.take(samples), Queue.offer(signal, undefined))), scope)
    yield* BackgroundLoop.start({
      name: "health",
      step: Effect.andThen(Queue.take(signal).pipe(Effect.timeoutOption(Duration.millis(intervalMs))), judge)
    }, scope)
    return Health.of({ report, thresholds })
  }))

/**
 * Health and its sampler over the pool the context provides (`PgClient`): what a
 * runtime adds to serve /health and the gauges.
 */
export const layer = (options: HealthOptions & { readonly sampler?: Partial<Sampler.SamplerConfig> } = {}): Layer.Layer<
  Health | Sampler.Sampler,
  InvalidSetting | Config.ConfigError,
  PgClient.PgClient | RuntimeEvents
> => layerFrom(options).pipe(Layer.provideMerge(Sampler.layer(options.sampler)))
