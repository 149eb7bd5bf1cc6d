/**
 * Loading a job catalogue for the binary: a module exporting `jobs` (or a default
 * export) that is an array of `Job.define(...)` values.
 */
import { isAbsolute, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Data, Effect } from "effect"
import type { AnyJob } from "../runtime/Job.ts"

/** The jobs module could not be loaded or exports no job list. */
export class JobsModuleError extends Data.TaggedError("JobsModuleError")<{
  readonly module: string
  readonly message: string
  readonly cause?: unknown
}> {}

const isJob = (u: unknown): u is AnyJob =>
  typeof u === "object" && u !== null &&
  typeof (u as { name?: unknown }).name === "string" &&
  typeof (u as { run?: unknown }).run === "function" &&
  (u as { payload?: unknown }).payload !== undefined

/** The module's job list: its `jobs` export, else its default export. */
const fromModule = (exports: Record<string, unknown>, module: string): AnyJob[] | JobsModuleError => {
  const list = exports["jobs"] ?? exports["default"]
  if (!Array.isArray(list)) {
    return new JobsModuleError({ module, message: `${module} exports no job list (expected \`export const jobs = [...]\` or a default export)` })
  }
  const bad = list.findIndex((j) => !isJob(j))
  if (bad >= 0) {
    return new JobsModuleError({ module, message: `${module}: entry ${bad} of its job list is not a job (use Job.define)` })
  }
  const names = new Set<string>()
  for (const job of list as AnyJob[]) {
    if (names.has(job.name)) return new JobsModuleError({ module, message: `${module}: job "${job.name}" is defined twice` })
    names.add(job.name)
  }
  return list as AnyJob[]
}

/** The name of the catalogue used when `--jobs` is not given (./demoJobs.ts). */
export const demoCatalogue = "the demo jobs"

/**
 * Loads the jobs of `path` (resolved from the current directory), or the demo
 * catalogue (./demoJobs.ts) when `path` is undefined.
 */
export const load = (path: string | undefined): Effect.Effect<ReadonlyArray<AnyJob>, JobsModuleError> => {
  const shown = path ?? demoCatalogue
  return Effect.tryPromise({
    try: () =>
      (path === undefined
        ? import("./demoJobs.ts")
        : import(pathToFileURL(isAbsolute(path) ? path : resolve(process.cwd(), path)).href)) as Promise<Record<string, unknown>>,
    catch: (cause) =>
      new JobsModuleError({
        module: shown,
        message: `cannot load the jobs module ${shown}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  }).pipe(Effect.flatMap((exports) => {
    const jobs = fromModule(exports, shown)
    return jobs instanceof JobsModuleError ? Effect.fail(jobs) : Effect.succeed(jobs)
  }))
}
