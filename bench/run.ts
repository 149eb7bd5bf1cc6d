/**
 * The benchmark: taskfiber against graphile-worker, pg-boss and BullMQ, on this
 * machine's PostgreSQL and Redis, in one run. `npm run bench` (see README).
 *
 * Per system and configuration, `--runs` times (default 3), each from fresh state:
 *   (a) enqueue: `--jobs` no-op jobs (default 20,000) through the system's batch
 *       API, `--chunk` per call (default 1,000), from this process → jobs/s;
 *   (b) drain: those jobs, one worker process, concurrency `--concurrency`
 *       (default 10) plus the configuration's own settings → jobs/s from just
 *       before the worker starts to the last handler's return; then the worker
 *       stops gracefully and the store must hold no unfinished job;
 *   (c) pickup latency: an idle worker in another process, one `add` every
 *       `--interval` ms (default 20), `--latency-jobs` jobs (default 300); the
 *       payload carries the enqueue time → p50/p95/p99/max ms;
 *   (d) the worker process's peak RSS during (b).
 *   (e) a deep backlog: the drain of (b) with `--big` queued jobs (default
 *       100,000) → jobs/s and the worker's peak RSS; how each system copes with a
 *       large table (skipped for configurations capped by `maxJobs`).
 *
 * The runs go in rounds (every system once, then again), so that a noisy stretch
 * of a shared machine falls on all systems alike. Reported: the median of the
 * runs, with min and max. Written to
 * bench/results/<date>-<commit>.json (only when every system ran, or with --save;
 * --label names the commit when the tree is not the commit's).
 *
 *   node bench/run.ts [--only a,b] [--runs 3] [--jobs 20000] [--save] [--label x]
 */
import { execFileSync, fork } from "node:child_process"
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import os from "node:os"
import { pathToFileURL } from "node:url"
import { parseArgs } from "node:util"
import pg from "pg"
import { Redis } from "ioredis"
import { percentile, round, spread, type Spread } from "./stats.ts"
import { allSystems, targetsFor } from "./systems/index.ts"
import { now, type Payload, type System } from "./systems/System.ts"
import type { WorkerReport } from "./worker.ts"

const { values: args } = parseArgs({
  options: {
    only: { type: "string" },
    runs: { type: "string", default: "3" },
    jobs: { type: "string", default: "20000" },
    chunk: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "10" },
    "latency-jobs": { type: "string", default: "300" },
    interval: { type: "string", default: "20" },
    big: { type: "string", default: "100000" },
    save: { type: "boolean", default: false },
    label: { type: "string" }
  }
})
const runs = Number(args.runs)
const jobs = Number(args.jobs)
const chunk = Number(args.chunk)
const concurrency = Number(args.concurrency)
const latencyJobs = Number(args["latency-jobs"])
const interval = Number(args.interval)
const big = Number(args.big)

const log = (line: string) => process.stderr.write(`${line}\n`)

/**
 * Worker processes run JavaScript compiled from bench/ and src/ into .bench-build/
 * (git-ignored), as a deployed service runs its build: Node's type stripping,
 * loaded for the first `.ts` file, would add 20–70 MB to every system's worker RSS.
 * The schema is copied beside the build, where src/store/Migrations.ts looks for it.
 */
const buildWorker = (): URL => {
  const root = new URL("../", import.meta.url)
  const out = new URL(".bench-build/", root)
  rmSync(out, { recursive: true, force: true })
  const tsc = new URL("bin/tsc", pathToFileURL(createRequire(import.meta.url).resolve("typescript/package.json"))).pathname
  execFileSync(process.execPath, [tsc, "-p", new URL("tsconfig.json", import.meta.url).pathname], { stdio: "inherit" })
  cpSync(new URL("schema/", root), new URL("schema/", out), { recursive: true })
  return new URL("bench/worker.js", out)
}
const workerScript = buildWorker()

/** Starts the compiled bench/worker.ts for `system`; resolves its reports through `onReport`. */
const startWorker = (system: System, mode: "drain" | "latency", count: number) => {
  const child = fork(workerScript, [system.name, mode, String(count), String(concurrency)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: [...(system.workerNodeOptions ?? [])]
  })
  const reports: Array<WorkerReport> = []
  const waiters: Array<(r: WorkerReport) => void> = []
  child.on("message", (message) => {
    const report = message as WorkerReport
    const waiter = waiters.shift()
    if (waiter) waiter(report)
    else reports.push(report)
  })
  const exited = new Promise<void>((resolve, reject) =>
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${system.name} worker exited with ${code}`))))
  )
  const next = () =>
    Promise.race([
      new Promise<WorkerReport>((resolve) => {
        const queued = reports.shift()
        if (queued) resolve(queued)
        else waiters.push(resolve)
      }),
      exited.then(() => Promise.reject(new Error(`${system.name} worker exited before reporting`)))
    ])
  return { next, exited }
}

const enqueueAll = async (system: System, count: number): Promise<number> => {
  const producer = await system.producer()
  const payloads: Array<Payload> = Array.from({ length: count }, () => ({ t: now() }))
  const startedAt = now()
  for (let i = 0; i < payloads.length; i += chunk) await producer.addBulk(payloads.slice(i, i + chunk))
  const ms = now() - startedAt
  await producer.close()
  return (count / ms) * 1000
}

const expectDrained = async (system: System, what: string) => {
  const left = await system.remaining()
  if (left !== 0) throw new Error(`${system.name}: ${left} jobs left unfinished after ${what}`)
}

interface Run {
  readonly enqueueJobsPerSec: number
  readonly drainJobsPerSec: number
  readonly peakRssMb: number
  readonly latencyMs: { readonly p50: number; readonly p95: number; readonly p99: number; readonly max: number }
  readonly bigDrainJobsPerSec?: number
  readonly bigPeakRssMb?: number
}

const drain = async (system: System, count: number) => {
  const worker = startWorker(system, "drain", count)
  const report = await worker.next()
  await worker.exited
  if (report.kind !== "drain") throw new Error(`unexpected report ${report.kind}`)
  await expectDrained(system, "the drain")
  if (report.handled !== count) log(`  note: ${system.name} ran ${report.handled} handlers for ${count} jobs`)
  return report
}

const latency = async (system: System) => {
  const producer = await system.producer()
  const worker = startWorker(system, "latency", latencyJobs)
  const ready = await worker.next()
  if (ready.kind !== "ready") throw new Error(`unexpected report ${ready.kind}`)
  const startedAt = now()
  for (let i = 0; i < latencyJobs; i++) {
    const wait = startedAt + i * interval - now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    await producer.add({ t: now() })
  }
  const report = await worker.next()
  await worker.exited
  await producer.close()
  if (report.kind !== "latency") throw new Error(`unexpected report ${report.kind}`)
  await expectDrained(system, "the latency run")
  const l = report.latencies
  return { p50: percentile(l, 50), p95: percentile(l, 95), p99: percentile(l, 99), max: Math.max(...l) }
}

const jobsFor = (system: System) => Math.min(jobs, system.maxJobs ?? jobs)

const runOnce = async (system: System): Promise<Run> => {
  const count = jobsFor(system)
  await system.reset()
  const enqueueJobsPerSec = await enqueueAll(system, count)
  const drained = await drain(system, count)
  await system.reset()
  const latencyMs = await latency(system)
  let bigRun: { readonly bigDrainJobsPerSec: number; readonly bigPeakRssMb: number } | undefined
  if (big > 0 && system.maxJobs === undefined) {
    await system.reset()
    await enqueueAll(system, big)
    const drained = await drain(system, big)
    bigRun = { bigDrainJobsPerSec: (big / drained.ms) * 1000, bigPeakRssMb: drained.peakRssMb }
  }
  return {
    enqueueJobsPerSec,
    drainJobsPerSec: (count / drained.ms) * 1000,
    peakRssMb: drained.peakRssMb,
    latencyMs,
    ...bigRun
  }
}

const machine = async (): Promise<string> => {
  const server = new pg.Client({ connectionString: targetsFor("postgres").databaseUrl })
  await server.connect()
  const pgVersion = (await server.query<{ server_version: string }>("show server_version")).rows[0]!.server_version
  await server.end()
  const { host, port } = targetsFor("postgres").redis
  const redis = new Redis({ host, port, lazyConnect: true })
  await redis.connect()
  const redisVersion = /redis_version:(\S+)/.exec(await redis.info("server"))?.[1] ?? "?"
  redis.disconnect()
  const cpu = os.cpus()
  return `${cpu[0]?.model.trim() ?? "cpu"} × ${cpu.length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
    `Linux ${os.release()}, Node ${process.versions.node}, PostgreSQL ${pgVersion}, Redis ${redisVersion} (all on loopback)`
}

const cell = (s: Spread, digits = 0) =>
  `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`

const main = async () => {
  const only = args.only?.split(",").map((s) => s.trim())
  const systems = (await allSystems()).filter((s) => only === undefined || only.includes(s.name))
  if (systems.length === 0) throw new Error(`no system matches --only ${args.only}`)
  const machineLine = await machine()
  log(`machine: ${machineLine}`)
  const results: Record<string, unknown> = {}
  const rows: Array<Array<string>> = []
  // Rounds outermost: every system's r-th run happens in the same stretch of time,
  // so a noisy minute on a shared machine hits all of them, not one.
  const done = new Map<string, Array<Run>>(systems.map((s) => [s.name, []]))
  for (let r = 1; r <= runs; r++) {
    for (const system of systems) {
      log(`${system.name} (${system.settings}): run ${r}/${runs}`)
      done.get(system.name)!.push(await runOnce(system))
    }
  }
  for (const system of systems) {
    const runsOf = done.get(system.name)!
    const of = (f: (run: Run) => number) => spread(runsOf.map(f))
    const enqueue = of((r) => r.enqueueJobsPerSec)
    const drained = of((r) => r.drainJobsPerSec)
    const p50 = of((r) => r.latencyMs.p50)
    const p95 = of((r) => r.latencyMs.p95)
    const p99 = of((r) => r.latencyMs.p99)
    const max = of((r) => r.latencyMs.max)
    const rss = of((r) => r.peakRssMb)
    const bigRss = runsOf[0]?.bigPeakRssMb === undefined ? undefined : of((r) => r.bigPeakRssMb!)
    const bigDrain = runsOf[0]?.bigDrainJobsPerSec === undefined ? undefined : of((r) => r.bigDrainJobsPerSec!)
    const pair = (s: Spread, digits = 0) => [round(s.min, digits), round(s.max, digits)]
    results[system.name] = {
      settings: system.settings,
      jobs: jobsFor(system),
      enqueueJobsPerSec: round(enqueue.median),
      drainJobsPerSec: round(drained.median),
      latencyMs: { p50: round(p50.median, 2), p95: round(p95.median, 2), p99: round(p99.median, 2), max: round(max.median, 2) },
      peakRssMb: round(rss.median, 1),
      ...(bigDrain === undefined ? {} : { drainJobsPerSecWithBigQueue: round(bigDrain.median) }),
      ...(bigRss === undefined ? {} : { peakRssMbWithBigQueue: round(bigRss.median, 1) }),
      minMax: {
        enqueueJobsPerSec: pair(enqueue),
        drainJobsPerSec: pair(drained),
        latencyMs: { p50: pair(p50, 2), p95: pair(p95, 2), p99: pair(p99, 2), max: pair(max, 2) },
        peakRssMb: pair(rss, 1),
        ...(bigDrain === undefined ? {} : { drainJobsPerSecWithBigQueue: pair(bigDrain) }),
        ...(bigRss === undefined ? {} : { peakRssMbWithBigQueue: pair(bigRss, 1) })
      }
    }
    rows.push([
      jobsFor(system) === jobs ? system.name : `${system.name} (${jobsFor(system)} jobs)`,
      cell(enqueue),
      cell(drained),
      cell(p50, 1),
      cell(p95, 1),
      cell(p99, 1),
      cell(max, 1),
      cell(rss),
      bigDrain === undefined ? "" : cell(bigDrain),
      bigRss === undefined ? "" : cell(bigRss)
    ])
  }
  const header = ["system", "enqueue jobs/s", "drain jobs/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "peak RSS MB",
    `drain jobs/s, ${big / 1000}k queued`, `RSS MB, ${big / 1000}k queued`]
  // No row measured the big queue: leave its columns out.
  if (rows.every((r) => r[8] === "")) {
    header.splice(8, 2)
    for (const r of rows) r.splice(8, 2)
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: Array<string>) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`
  console.log(`\nmedian of ${runs} runs (min–max); ${jobs} jobs, concurrency ${concurrency}; latency: ${latencyJobs} jobs, one per ${interval} ms`)
  console.log(line(header))
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`)
  for (const row of rows) console.log(line(row))
  console.log(`\nmachine: ${machineLine}`)

  const date = new Date().toISOString()
  const document = {
    machine: machineLine,
    date,
    workload: { jobs, chunk, concurrency, latencyJobs, intervalMs: interval, runs, bigQueue: big },
    systems: results
  }
  if (only === undefined || args.save) {
    const dir = new URL("./results/", import.meta.url)
    mkdirSync(dir, { recursive: true })
    const text = `${JSON.stringify(document, null, 2)}\n`
    const commit = args.label ?? execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
    const dated = `${date.slice(0, 10)}-${commit}.json`
    writeFileSync(new URL(dated, dir), text)
    log(`written: bench/results/${dated}`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
