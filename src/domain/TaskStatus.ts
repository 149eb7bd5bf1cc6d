/**
 * The task state machine: statuses, the moves between them, and the single
 * `transition` function every status change goes through.
 *
 * The table here is the source of truth; `taskfiber.transition_allowed` in
 * `schema/functions/state_machine.sql` must equal `allowedTransitions` (a test
 * compares them), so the database refuses what the domain refuses.
 *
 * @since 0.1.0
 */
import { Data, Result, Schema } from "effect"

/**
 * Every status, in the order of the PostgreSQL enum `taskfiber.task_status`.
 *
 * @since 0.1.0
 */
export const TaskStatuses = ["queued", "running", "succeeded", "retrying", "failed", "cancelled"] as const

/**
 * The status of a task.
 *
 * @since 0.1.0
 */
export type TaskStatus = typeof TaskStatuses[number]

/**
 * Schema of a task status (one of {@link TaskStatuses}).
 *
 * @since 0.1.0
 */
export const TaskStatus = Schema.Literals(TaskStatuses)

/**
 * A named status change. Code asks for a move, never for a raw target status,
 * so the reason for every change is explicit.
 *
 * @since 0.1.0
 */
export type Move = "claim" | "complete" | "retry" | "fail" | "cancel" | "release" | "replay"

/**
 * The moves as data: the statuses each move may start from and where it leads.
 *
 * - `release` hands a running task back on graceful shutdown; the attempt is
 *   not consumed.
 * - `replay` is the only way out of `failed`, and only dead-letter replay uses it.
 *
 * @since 0.1.0
 */
export const moves: { readonly [M in Move]: { readonly from: ReadonlyArray<TaskStatus>; readonly to: TaskStatus } } = {
  claim: { from: ["queued", "retrying"], to: "running" },
  complete: { from: ["running"], to: "succeeded" },
  retry: { from: ["running"], to: "retrying" },
  fail: { from: ["running"], to: "failed" },
  cancel: { from: ["queued", "running", "retrying"], to: "cancelled" },
  release: { from: ["running"], to: "queued" },
  replay: { from: ["failed"], to: "queued" }
}

/**
 * Schema of a move name.
 *
 * @since 0.1.0
 */
export const Move = Schema.Literals(
  ["claim", "complete", "retry", "fail", "cancel", "release", "replay"] as const satisfies ReadonlyArray<Move>
)

/**
 * Every move name.
 *
 * @since 0.1.0
 */
export const Moves: ReadonlyArray<Move> = Move.literals

/**
 * Every allowed `[from, to]` pair, derived from {@link moves}. Each pair belongs
 * to exactly one move, which is what makes {@link moveBetween} well defined.
 *
 * @since 0.1.0
 */
export const allowedTransitions: ReadonlyArray<readonly [TaskStatus, TaskStatus]> = Moves.flatMap((move) =>
  moves[move].from.map((from) => [from, moves[move].to] as const)
)

const terminal: ReadonlySet<TaskStatus> = new Set<TaskStatus>(["succeeded", "failed", "cancelled"])

/**
 * Whether a status is final. `failed` counts as terminal: only an explicit
 * dead-letter `replay` takes a task out of it.
 *
 * @since 0.1.0
 */
export const isTerminal = (status: TaskStatus): boolean => terminal.has(status)

/**
 * Whether some move leads from `from` to `to`.
 *
 * @since 0.1.0
 */
export const canMove = (from: TaskStatus, to: TaskStatus): boolean => moveBetween(from, to) !== undefined

/**
 * The move that leads from `from` to `to`, or `undefined` when none does.
 *
 * @since 0.1.0
 */
export const moveBetween = (from: TaskStatus, to: TaskStatus): Move | undefined =>
  Moves.find((move) => moves[move].to === to && moves[move].from.includes(from))

/**
 * A move was asked for from a status it does not start from.
 *
 * @since 0.1.0
 */
export class ForbiddenTransition extends Data.TaggedError("ForbiddenTransition")<{
  readonly from: TaskStatus
  readonly to: TaskStatus
  readonly move: Move
}> {
  override get message(): string {
    return `forbidden task transition ${this.from} -> ${this.to} (move "${this.move}" starts only from ${
      moves[this.move].from.join(" or ")
    })`
  }
}

/**
 * Applies a move to a status: the new status, or a `ForbiddenTransition`
 * naming the status, the move and the target it would have reached.
 *
 * @since 0.1.0
 */
export const transition = (from: TaskStatus, move: Move): Result.Result<TaskStatus, ForbiddenTransition> => {
  const { from: sources, to } = moves[move]
  return sources.includes(from) ? Result.succeed(to) : Result.fail(new ForbiddenTransition({ from, to, move }))
}
