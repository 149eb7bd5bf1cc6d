/**
 * taskfiber as one Layer for an Effect application: the database (migrated), the
 * task store, the worker and job registries, the coordination ports (wake-ups by
 * LISTEN/NOTIFY, the in-process cancel bus), the runtime's event hub and a running
 * supervisor.
 *
 * ```ts
 * const App = program.pipe(Effect.provide(Taskfiber.layer({ jobs: [SendEmail] })))
 * ```
 */
import { Effect, Layer, Option } from "effect"
import * as KafkaConfig from "./ingress/kafka/KafkaConfig.ts"
import * as KafkaIngress from "./ingress/kafka/KafkaIngress.ts"
import * as OutboxRelay from "./outbox/OutboxRelay.ts"
import * as CancelBus from "./coordination/CancelBus.ts"
import * as PgWakeups from "./coordination/PgWakeups.ts"
import * as EventLog from "./observability/EventLog.ts"
import * as RuntimeEvents from "./observability/RuntimeEvents.ts"
import type { AnyJob } from "./runtime/Job.ts"
import * as JobRegistry from "./runtime/JobRegistry.ts"
import * as RuntimeConfig from "./runtime/RuntimeConfig.ts"
import * as Supervisor from "./runtime/Supervisor.ts"
import * as Database from "./store/Database.ts"
import * as PgTaskStore from "./store/PgTaskStore.ts"
import * as Workers from "./store/Workers.ts"
import * as DeadLetters from "./store/DeadLetters.ts"

/** What the layer takes. */
export interface TaskfiberOptions {
  readonly jobs: ReadonlyArray<AnyJob>
  /** Overrides of the environment's settings (MAX_CONCURRENT_JOBS, …). */
  readonly config?: Partial<RuntimeConfig.RuntimeConfig>
  /**
   * Kafka: these settings, or `false` for none; absent, the environment's
   * (`KAFKA_BROKERS` and the rest; unset, no Kafka).
   */
  readonly kafka?: KafkaConfig.KafkaConfig | false
}

/**
 * What a supervisor needs besides its jobs, over a database the application
 * provides: store, worker registry, dead letters, cancel bus, wake-ups, the event hub and its
 * log lines (EventLog, closed after the supervisors built on it). The
 * store's attempt limit is `config.retryMaxAttempts`, else `RETRY_MAX_ATTEMPTS`.
 */
export const runtimeServices = (config: Pick<Partial<RuntimeConfig.RuntimeConfig>, "retryMaxAttempts"> = {}) =>
  Layer.mergeAll(
    config.retryMaxAttempts === undefined ? PgTaskStore.layer : PgTaskStore.layerWith({ maxAttempts: config.retryMaxAttempts }),
    Workers.layer,
    DeadLetters.layer,
    CancelBus.layerLocal,
    PgWakeups.layer,
    EventLog.layer
  ).pipe(Layer.provideMerge(RuntimeEvents.layer))

/** {@link runtimeServices} and the job registry of `jobs`. */
export const services = (
  jobs: ReadonlyArray<AnyJob>,
  config: Pick<Partial<RuntimeConfig.RuntimeConfig>, "retryMaxAttempts"> = {}
) => Layer.merge(runtimeServices(config), JobRegistry.layer(jobs))

/**
 * The settings: the environment's with `options.config` over them, refused
 * ({@link RuntimeConfig.InvalidSetting}) when a per-queue limit names a queue none
 * of the jobs runs in.
 */
const settings = (options: TaskfiberOptions) =>
  Effect.gen(function*() {
    const config = { ...(yield* RuntimeConfig.config), ...options.config }
    yield* RuntimeConfig.checkQueueConcurrency(
      config.queueConcurrency,
      JobRegistry.make(options.jobs).queues,
      options.config?.queueConcurrency === undefined ? "environment" : "options"
    )
    const kafka = options.kafka === false
      ? Option.none()
      : options.kafka === undefined
      ? yield* KafkaConfig.config
      : Option.some(options.kafka)
    return { config, kafka }
  })

/**
 * The supervisor over its services, with settings already checked; with Kafka,
 * the ingress and the status relay beside it, built after it so that they stop first.
 */
const runtime = (options: TaskfiberOptions, { config, kafka }: { readonly config: RuntimeConfig.RuntimeConfig; readonly kafka: Option.Option<KafkaConfig.KafkaConfig> }) => {
  const core = Supervisor.layerWith(config).pipe(Layer.provideMerge(services(options.jobs, config)))
  return Option.match(kafka, {
    onNone: () => core,
    onSome: (k) => Layer.merge(KafkaIngress.layer(k), OutboxRelay.layerFor(k)).pipe(Layer.provideMerge(core))
  })
}

/**
 * The whole runtime over a `PgClient` the application provides (its own pool),
 * migrated by `Migrations.run` beforehand or by {@link layer}.
 */
export const layerWithoutDatabase = (options: TaskfiberOptions) =>
  Layer.unwrap(Effect.map(settings(options), (checked) => runtime(options, checked)))

/**
 * The whole runtime on the configured database (embedded when DATABASE_URL is
 * unset); settings are checked before the database is opened.
 */
export const layer = (options: TaskfiberOptions) =>
  Layer.unwrap(Effect.map(settings(options), (checked) =>
    runtime(options, checked).pipe(Layer.provideMerge(Database.layerWith({ warmUp: "when-idle" })))))
