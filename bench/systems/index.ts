/**
 * Every system under benchmark, in the order of the table. Adapter modules load
 * lazily, so that a worker process holds only its own system's libraries (its peak
 * RSS is then its own).
 */
import type { System, SystemFactory, Targets } from "./System.ts"

/** The targets from the environment: BENCH_PG (server URL) and BENCH_REDIS (host:port). */
export const targetsFor = (database: string): Targets => {
  const server = new URL(process.env.BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/postgres")
  server.pathname = `/${database}`
  const [host = "127.0.0.1", port = "6379"] = (process.env.BENCH_REDIS ?? "127.0.0.1:6379").split(":")
  return { databaseUrl: server.toString(), redis: { host, port: Number(port), db: 11 } }
}

const adapters: ReadonlyArray<{ readonly prefix: string; readonly database: string; readonly load: () => Promise<SystemFactory> }> = [
  { prefix: "taskfiber", database: "bench_taskfiber", load: async () => (await import("./taskfiber.ts")).factory },
  { prefix: "graphile-worker", database: "bench_graphile_worker", load: async () => (await import("./graphileWorker.ts")).factory },
  { prefix: "pg-boss", database: "bench_pg_boss", load: async () => (await import("./pgBoss.ts")).factory },
  { prefix: "bullmq", database: "bench_bullmq", load: async () => (await import("./bullmq.ts")).factory }
]

/** All systems, each with a database of its own. */
export const allSystems = async (): Promise<ReadonlyArray<System>> => {
  const all: Array<System> = []
  for (const a of adapters) all.push(...(await a.load())(targetsFor(a.database)))
  return all
}

/** The system called `name`, loading only its adapter; throws with the known names otherwise. */
export const systemNamed = async (name: string): Promise<System> => {
  const adapter = adapters.find((a) => name === a.prefix || name.startsWith(`${a.prefix}-`))
  const found = adapter && (await adapter.load())(targetsFor(adapter.database)).find((s) => s.name === name)
  if (!found) throw new Error(`no system "${name}"; known: ${(await allSystems()).map((s) => s.name).join(", ")}`)
  return found
}
