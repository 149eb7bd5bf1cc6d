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
import * as Admin from "./admin/Admin.ts"
import * as CancelBus from "./coordination/CancelBus.ts"
import * as PgWakeups from "./coordination/PgWakeups.ts"
import * as HttpServer from "./http/HttpServer.ts"
import * as EventLog from "./observability/EventLog.ts"
import * as Health from "./observability/Health.ts"
import * as Metrics from "./observability/Metrics.ts"
import * as Readiness from "./observability/Readiness.ts"
import * as Telemetry from "./observability/Telemetry.ts"
import * as RuntimeEvents from "./observability/RuntimeEvents.ts"
import type { AnyJob } from "./runtime/Job.ts"
import * as JobRegistry from "./runtime/JobRegistry.ts"
import * as RuntimeConfig from "./runtime/RuntimeConfig.ts"
import * as Supervisor from "./runtime/Supervisor.ts"
import * as Database from "./store/Database.ts"
import * as PgTaskStore from "./store/PgTaskStore.ts"
import * as Workers from "./store/Workers.ts"
import * as DeadLetters from "./store/DeadLetters.ts"
import * as QueuePauses from "./store/QueuePauses.ts"

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
  /**
   * The HTTP server (health probes, `/metrics`, the admin API): `true` for `HTTP_PORT`/`HTTP_HOST`
   * (default 127.0.0.1:8080), or an address; absent or `false`, none (an embedding
   * application may serve {@link HttpServer.routesWith} on its own server instead).
   * The binary's `start` serves it.
   */
  readonly http?: boolean | Partial<HttpServer.HttpConfig>
  /**
   * {@link layer}'s logs and OTLP export for the runtime's fibers: the
   * environment's (`LOG_FORMAT`, `LOG_LEVEL`, `OTEL_ENABLED`, … — Telemetry.layer),
   * the same as the binary's; `false` leaves them to the application's own logger
   * and tracer. {@link layerWithoutDatabase} always leaves them to the application.
   */
  readonly telemetry?: boolean
  /** Health thresholds over the environment's (`HEALTH_*`). */
  readonly health?: Partial<Health.HealthOptions["thresholds"]>
}

/**
 * What a supervisor needs besides its jobs, over a database the application
 * provides: store, worker registry, dead letters, queue pauses, cancel bus, wake-ups, the event hub and its
 * log lines (EventLog, closed after the supervisors built on it). The
 * store's attempt limit is `config.retryMaxAttempts`, else `RETRY_MAX_ATTEMPTS`.
 */
export const runtimeServices = (config: Pick<Partial<RuntimeConfig.RuntimeConfig>, "retryMaxAttempts"> = {}) =>
  Layer.mergeAll(
    config.retryMaxAttempts === undefined ? PgTaskStore.layer : PgTaskStore.layerWith({ maxAttempts: config.retryMaxAttempts }),
    Workers.layer,
    DeadLetters.layer,
    QueuePauses.layer,
    CancelBus.layerLocal,
    PgWakeups.layer,
    EventLog.layer,
    Metrics.layer
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
    const http = options.http === undefined || options.http === false
      ? Option.none()
      : Option.some({ ...(yield* HttpServer.config), ...(options.http === true ? {} : options.http) })
    return { config, kafka, http }
  })

/** What {@link settings} read. */
interface Settings {
  readonly config: RuntimeConfig.RuntimeConfig
  readonly kafka: Option.Option<KafkaConfig.KafkaConfig>
  readonly http: Option.Option<HttpServer.HttpConfig>
}

/**
 * The runtime over its services, with settings already checked, built in this
 * order (and closed in the reverse one): the services and observers (event log,
 * metrics, the sampler, health, readiness); the HTTP
 * server (answering `/health/ready` with "starting"); the supervisor; with Kafka,
 * the ingress and the status relay; last, the mark that the supervisor is up —
 * so that at shutdown the instance reads "shutting down" first, its ingress stops
 * before its supervisor, and its probes answer until the jobs have finished.
 */
const runtime = (options: TaskfiberOptions, { config, kafka, http }: Settings) => {
  const observed = Layer.mergeAll(Admin.layer, Readiness.layer({ kafka: Option.isSome(kafka) }), Health.layer({ kafka: Option.isSome(kafka), ...(options.health === undefined ? {} : { thresholds: options.health }) })).pipe(
    Layer.provideMerge(services(options.jobs, config))
  )
  const served = Option.match(http, {
    onNone: () => observed,
    onSome: (address) => HttpServer.layerWith(address).pipe(Layer.provideMerge(observed))
  })
  const core = Supervisor.layerWith(config).pipe(Layer.provideMerge(served))
  const consuming = Option.match(kafka, {
    onNone: () => core,
    onSome: (k) => Layer.merge(KafkaIngress.layer(k), OutboxRelay.layerFor(k)).pipe(Layer.provideMerge(core))
  })
  return Readiness.supervisorUp.pipe(Layer.provideMerge(consuming))
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
export const layer = (options: TaskfiberOptions) => {
  const whole = Layer.unwrap(Effect.map(settings(options), (checked) =>
    runtime(options, checked).pipe(Layer.provideMerge(Database.layerWith({ warmUp: "when-idle" })))))
  return options.telemetry === false ? whole : whole.pipe(Layer.provide(Telemetry.layer))
}
