/**
 * The `taskfiber` service binary.
 *
 *   taskfiber start     open the database (embedded when DATABASE_URL is unset),
 *                       migrate, report what is stored
 *   taskfiber migrate   bring the schema up to date and exit
 *
 * The job runtime (supervisor, `enqueue`, `status`) arrives with the next issue.
 */
import { Console, Effect, Layer } from "effect"
import { Command } from "effect/cli"
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import * as Database from "../store/Database.ts"
import * as TaskStore from "../store/TaskStore.ts"

const Store = TaskStore.layer.pipe(Layer.provideMerge(Database.layer))

const printStats = Effect.gen(function*() {
  const store = yield* TaskStore.TaskStore
  const stats = yield* store.stats
  if (stats.depth.length === 0) {
    yield* Console.log("no tasks stored yet")
    return
  }
  for (const d of stats.depth) {
    yield* Console.log(`${d.queue}\t${d.status}\tpriority ${d.priority}\t${d.count}`)
  }
})

const start = Command.make("start", {}, () =>
  Effect.gen(function*() {
    yield* Console.log("taskfiber: database ready and migrated")
    yield* printStats
    yield* Console.log(
      "taskfiber: the job runtime (supervisor, enqueue, status) arrives with the next release; nothing to run yet"
    )
  }).pipe(Effect.provide(Store))).pipe(
  Command.withDescription("Open the database (embedded when DATABASE_URL is unset), migrate, report")
)

const migrate = Command.make("migrate", {}, () =>
  Console.log("taskfiber: schema up to date").pipe(Effect.provide(Database.layer))).pipe(
  Command.withDescription("Apply pending migrations from schema/ and exit")
)

const cli = Command.make("taskfiber").pipe(
  Command.withDescription("A durable, observable task runtime on PostgreSQL"),
  Command.withSubcommands([start, migrate])
)

Command.run(cli, { version: "0.1.0" }).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
