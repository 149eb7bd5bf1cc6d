/**
 * A worker process for the crash tests: a supervisor with the `resumable` and
 * `one-shot` jobs on DATABASE_URL (PREFETCH, MAX_CONCURRENT_JOBS from the
 * environment), logging at debug level to stdout. The test kills it with SIGKILL:
 * no finalizer, no release, its leases simply stop being renewed.
 */
import { Duration, Effect, Layer, Logger, Redacted, References } from "effect"
import { NodeRuntime } from "@effect/platform-node"
import * as Taskfiber from "../../src/Taskfiber.ts"
import * as Database from "../../src/store/Database.ts"
import { OneShot, Resumable } from "./resumable.ts"

const url = process.env.DATABASE_URL
if (!url) throw new Error("DATABASE_URL is required")

const Worker = Taskfiber.layerWithoutDatabase({
  jobs: [Resumable, OneShot],
  config: { lease: Duration.seconds(1), progressInterval: Duration.millis(20), reapInterval: Duration.seconds(60) }
}).pipe(Layer.provideMerge(Database.layerUrl(Redacted.make(url))))

Layer.launch(Worker).pipe(
  Effect.provide(Logger.layer([Logger.consoleJson])),
  Effect.provideService(References.MinimumLogLevel, "Debug"),
  NodeRuntime.runMain
)
