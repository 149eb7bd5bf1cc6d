import { describe, expect, it } from "@effect/vitest"
import { newTaskId } from "../../src/store/TaskId.ts"

describe("newTaskId", () => {
  it("is a UUIDv7: version 7, RFC variant, the millisecond timestamp in front", () => {
    const at = Date.UTC(2026, 10, 23, 10, 0, 0, 123)
    const id = newTaskId(at)
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16)).toBe(at)
  })

  it("orders by creation time across milliseconds and never repeats (100,000 ids)", () => {
    const ids: Array<string> = []
    const start = Date.UTC(2026, 0, 1)
    for (let i = 0; i < 100_000; i++) ids.push(newTaskId(start + Math.floor(i / 100)))
    expect(new Set(ids).size).toBe(ids.length)
    for (let i = 100; i < ids.length; i += 100) expect(ids[i - 1]! < ids[i]!).toBe(true)
  })
})
