/**
 * The jobs this instance can run, by name.
 */
import { Context, Layer } from "effect"
import type { AnyJob } from "./Job.ts"

/** The job registry service. */
export class JobRegistry extends Context.Service<JobRegistry, {
  readonly get: (name: string) => AnyJob | undefined
  readonly jobs: ReadonlyArray<AnyJob>
  /** The queues the registered jobs use (each job's `queues`): this worker serves them. */
  readonly queues: ReadonlyArray<string>
}>()("taskfiber/JobRegistry") {}

/** A registry of `jobs`; a duplicate name is a defect at start-up. */
export const make = (jobs: ReadonlyArray<AnyJob>): JobRegistry["Service"] => {
  const byName = new Map<string, AnyJob>()
  for (const job of jobs) {
    if (byName.has(job.name)) throw new Error(`taskfiber: job "${job.name}" is defined twice`)
    byName.set(job.name, job)
  }
  return {
    get: (name) => byName.get(name),
    jobs: [...byName.values()],
    queues: [...new Set(jobs.flatMap((j) => j.queues))]
  }
}

/** The registry as a layer. */
export const layer = (jobs: ReadonlyArray<AnyJob>): Layer.Layer<JobRegistry> =>
  Layer.sync(JobRegistry, () => make(jobs))
