import { describe, expect, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as Arbitrary from "effect/Arbitrary"
import {
  allowedTransitions,
  canMove,
  ForbiddenTransition,
  isTerminal,
  Move,
  moveBetween,
  moves,
  Moves,
  TaskStatus,
  TaskStatuses,
  transition
} from "../../src/domain/TaskStatus.ts"

const isAllowed = (from: TaskStatus, to: TaskStatus) =>
  allowedTransitions.some(([f, t]) => f === from && t === to)

describe("TaskStatus", () => {
  it("lists the statuses in the order of the PostgreSQL enum", () => {
    expect(TaskStatuses).toEqual(["queued", "running", "succeeded", "retrying", "failed", "cancelled"])
    expect(Schema.is(TaskStatus)("running")).toBe(true)
    expect(Schema.is(TaskStatus)("done")).toBe(false)
  })

  it("derives exactly the ten allowed transitions of the SQL table", () => {
    const pairs = allowedTransitions.map(([from, to]) => `${from}->${to}`).sort()
    expect(pairs).toEqual([
      "failed->queued",
      "queued->cancelled",
      "queued->running",
      "retrying->cancelled",
      "retrying->running",
      "running->cancelled",
      "running->failed",
      "running->queued",
      "running->retrying",
      "running->succeeded"
    ])
    expect(Moves).toEqual(Object.keys(moves))
  })

  it("names the move of every allowed pair and of no other pair", () => {
    for (const from of TaskStatuses) {
      for (const to of TaskStatuses) {
        const move = moveBetween(from, to)
        expect(canMove(from, to)).toBe(isAllowed(from, to))
        if (move === undefined) {
          expect(isAllowed(from, to)).toBe(false)
        } else {
          expect(transition(from, move)).toEqual(Result.succeed(to))
        }
      }
    }
  })

  it("marks succeeded, failed and cancelled terminal", () => {
    expect(TaskStatuses.filter(isTerminal)).toEqual(["succeeded", "failed", "cancelled"])
  })

  it("reaches every status from queued", () => {
    const reached = new Set<TaskStatus>(["queued"])
    let frontier: ReadonlyArray<TaskStatus> = ["queued"]
    while (frontier.length > 0) {
      frontier = frontier.flatMap((from) =>
        Moves.flatMap((move) => {
          const next = transition(from, move)
          if (Result.isFailure(next) || reached.has(next.success)) return []
          reached.add(next.success)
          return [next.success]
        })
      )
    }
    expect([...reached].sort()).toEqual([...TaskStatuses].sort())
  })

  it("explains a forbidden move", () => {
    const result = transition("succeeded", "retry")
    expect(Result.isFailure(result)).toBe(true)
    if (Result.isFailure(result)) {
      expect(result.failure).toBeInstanceOf(ForbiddenTransition)
      expect(result.failure._tag).toBe("ForbiddenTransition")
      expect(result.failure.message).toContain("succeeded -> retrying")
      expect(result.failure.message).toContain("retry")
    }
  })

  it.prop("no move leaves a terminal status except replay from failed", { status: TaskStatus, move: Move }, ({ move, status }) => {
    if (!isTerminal(status)) return
    const result = transition(status, move)
    expect(Result.isSuccess(result)).toBe(status === "failed" && move === "replay")
  })

  it.prop(
    "random move sequences from queued only follow allowed transitions",
    { path: Arbitrary.array(Arbitrary.schema(Move), { minLength: 5, maxLength: 60 }) },
    ({ path }) => {
      let status: TaskStatus = "queued"
      for (const move of path) {
        const result = transition(status, move)
        if (Result.isSuccess(result)) {
          expect(isAllowed(status, result.success)).toBe(true)
          expect(result.success).toBe(moves[move].to)
          expect(moveBetween(status, result.success)).toBe(move)
          status = result.success
        } else {
          expect(result.failure).toBeInstanceOf(ForbiddenTransition)
          expect(result.failure.from).toBe(status)
          expect(result.failure.to).toBe(moves[move].to)
          expect(result.failure.move).toBe(move)
          expect(moves[move].from).not.toContain(status)
        }
      }
      expect(TaskStatuses).toContain(status)
    },
    { arbitrary: { runs: 500 } }
  )
})
