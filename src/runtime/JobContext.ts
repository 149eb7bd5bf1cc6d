/**
 * What a running handler gets besides its payload.
 */
import type { Effect, Tracer } from "effect"
import type { UnstorableValue } from "../domain/Errors.ts"

/** The context of one run of a task. */
export interface JobContext {
  readonly taskId: string
  /** Runs started, this one included: 1 on the first run. */
  readonly attempt: number
  /** The task's attempt limit: a failure of the run whose `attempt` reaches it is final. */
  readonly maxAttempts: number
  /** The last checkpoint saved by an earlier run (null: none) — resume from it. */
  readonly checkpoint: unknown
  /**
   * Reports progress. Persisted, throttled: however often it is called, the task
   * row is written at most once per `PROGRESS_INTERVAL`, always with the latest value.
   * A value jsonb cannot store (a BigInt, a cycle, U+0000 in a string) fails the
   * call with `UnstorableValue` (permanent, unless the handler handles it).
   */
  readonly progress: (value: unknown) => Effect.Effect<void, UnstorableValue>
  /** Saves a checkpoint; throttled like `progress`, and flushed before the run ends. */
  readonly saveCheckpoint: (value: unknown) => Effect.Effect<void, UnstorableValue>
  /**
   * The run's span (`taskfiber.run <type>`): add attributes. With a tracing backend
   * installed it is current in the handler, so the handler's own spans are its
   * children. With none (Effect's native tracer exports nothing) no span is made
   * per run, and this is a stand-in made on first use, parent of nothing.
   */
  readonly span: Tracer.Span
}
