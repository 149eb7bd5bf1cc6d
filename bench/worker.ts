/**
 * The worker process of a benchmark: `node bench/worker.ts <system> <drain|latency> <jobs> <concurrency>`.
 * Started by bench/run.ts with an IPC channel; reports one message and exits.
 *
 * drain:   runs until `jobs` jobs were handled. Reports the time from just before
 *          the worker starts to the last handler's return, then stops the worker
 *          gracefully (batched completions flushed) and reports the process's peak
 *          RSS (VmHWM, read from the kernel: no sampling to miss a peak).
 * latency: sends "ready" once the worker takes jobs, then reports each job's
 *          pickup latency (handler start minus the payload's enqueue time, on the
 *          machine-wide monotonic clock).
 */
import { readFileSync } from "node:fs"
import { systemNamed } from "./systems/index.ts"
import { now } from "./systems/System.ts"

/** What the worker reports to the harness. */
export type WorkerReport =
  | { readonly kind: "ready" }
  | { readonly kind: "drain"; readonly handled: number; readonly ms: number; readonly stopMs: number; readonly peakRssMb: number }
  | { readonly kind: "latency"; readonly latencies: ReadonlyArray<number>; readonly peakRssMb: number }

const peakRssMb = (): number => {
  const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"))
  const kb = line === undefined ? NaN : Number(line.replace(/\D+/g, ""))
  return kb / 1024
}

const send = (report: WorkerReport) =>
  new Promise<void>((resolve, reject) => process.send!(report, (error: Error | null) => (error ? reject(error) : resolve())))

const main = async () => {
  const [name, mode, jobsArg, concurrencyArg] = process.argv.slice(2)
  const jobs = Number(jobsArg)
  const concurrency = Number(concurrencyArg)
  if (!name || (mode !== "drain" && mode !== "latency") || !(jobs > 0) || !(concurrency > 0)) {
    throw new Error("usage: node bench/worker.ts <system> <drain|latency> <jobs> <concurrency>")
  }
  const system = await systemNamed(name)
  let handled = 0
  let lastAt = 0
  const latencies: Array<number> = []
  let finish!: () => void
  const finished = new Promise<void>((resolve) => (finish = resolve))
  const onJob = (payload: { readonly t: number }) => {
    const at = now()
    if (mode === "latency") latencies.push(at - payload.t)
    handled++
    lastAt = at
    if (handled === jobs) finish()
  }
  const startedAt = now()
  const worker = await system.startWorker({ concurrency, onJob })
  if (mode === "latency") await send({ kind: "ready" })
  await finished
  const stopAt = now()
  await worker.stop()
  const stopMs = now() - stopAt
  await send(mode === "drain"
    ? { kind: "drain", handled, ms: lastAt - startedAt, stopMs, peakRssMb: peakRssMb() }
    : { kind: "latency", latencies, peakRssMb: peakRssMb() })
  process.disconnect()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
