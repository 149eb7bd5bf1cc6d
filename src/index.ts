/**
 * taskfiber's public library API.
 *
 * - the pure domain: statuses, priority ageing, error classification, retry policies;
 * - the PostgreSQL store: database layer, migrations, TaskStore, transactions,
 *   classified database errors, pausing and resuming queues (`QueuePauses`);
 * - the job runtime: `Job.define`, the registry, typed `Tasks.enqueue`, the
 *   supervisor, and `Taskfiber.layer`, which puts it all in one Layer;
 * - the runtime's events (`RuntimeEvents`), for logs, metrics or an application's
 *   own observers;
 * - the runtime's metrics (`Metrics`), readiness (`Readiness`) and the HTTP server
 *   of probes and `/metrics` (`HttpServer`);
 * - health: the scoring policy (`HealthPolicy`), the one SQL sampler behind the
 *   gauges (`Sampler`) and the `Health` service that judges its samples;
 * - `Logging` (log formats on stderr, secrets masked) and `Telemetry` (the OTLP
 *   export of traces, metrics and logs), the binary's observability as layers;
 * - `Admin`: the operator's operations (list, cancel and retry tasks, dead letters
 *   and their replay, queue depths, the registered jobs), as the CLI uses them.
 */
export * as Classification from "./domain/Classification.ts"
export * as Errors from "./domain/Errors.ts"
export * as HealthPolicy from "./domain/HealthPolicy.ts"
export type { Outcome } from "./domain/Outcome.ts"
export * as Priority from "./domain/Priority.ts"
export * as RetryPolicy from "./domain/RetryPolicy.ts"
export * as StoredJson from "./domain/StoredJson.ts"
export * as Task from "./domain/Task.ts"
export * as TaskStatus from "./domain/TaskStatus.ts"

export * as Database from "./store/Database.ts"
export * as DatabaseError from "./store/DatabaseError.ts"
export * as EmbeddedPostgres from "./store/EmbeddedPostgres.ts"
export * as Migrations from "./store/Migrations.ts"
export * as TaskStore from "./store/TaskStore.ts"
export * as PgTaskStore from "./store/PgTaskStore.ts"
export * as QueuePauses from "./store/QueuePauses.ts"
export * as Transaction from "./store/Transaction.ts"
export * as Workers from "./store/Workers.ts"

export * as CancelBus from "./coordination/CancelBus.ts"
export * as Job from "./runtime/Job.ts"
export type { JobContext } from "./runtime/JobContext.ts"
export * as JobRegistry from "./runtime/JobRegistry.ts"
export * as RuntimeConfig from "./runtime/RuntimeConfig.ts"
export * as Supervisor from "./runtime/Supervisor.ts"
export * as Tasks from "./runtime/Tasks.ts"
export * as Taskfiber from "./Taskfiber.ts"

export * as Logging from "./observability/Logging.ts"
export * as RuntimeEvents from "./observability/RuntimeEvents.ts"
export * as Health from "./observability/Health.ts"
export * as Sampler from "./observability/Sampler.ts"
export * as Telemetry from "./observability/Telemetry.ts"
export * as Metrics from "./observability/Metrics.ts"
export * as Readiness from "./observability/Readiness.ts"
export * as HttpServer from "./http/HttpServer.ts"
export * as Admin from "./admin/Admin.ts"
export * as DeadLetters from "./store/DeadLetters.ts"
