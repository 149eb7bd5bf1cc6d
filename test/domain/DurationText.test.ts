import { describe, expect, it } from "@effect/vitest"
import { Duration, Schema } from "effect"
import * as DurationText from "../../src/domain/DurationText.ts"

const ms = (text: string) => {
  const d = DurationText.parse(text)
  return d === undefined ? undefined : Duration.toMillis(d)
}

const Millis = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1_000_000_000 }))

describe("DurationText", () => {
  it.prop("bare milliseconds and duration strings of one length agree", { n: Millis }, ({ n }) => {
    expect(ms(String(n))).toBe(n)
    expect(ms(`${n} millis`)).toBe(n)
    expect(ms(` ${n} seconds `)).toBe(n * 1000)
    expect(ms(`-${n}`)).toBe(n === 0 ? 0 : -n)
  })

  it("refuses what is neither", () => {
    for (const text of ["", "soon", "5 parsecs", "1e3", "Infinity", "NaN", "--5"]) expect(ms(text), text).toBeUndefined()
    expect(ms("1500")).toBe(1500)
    expect(ms("2 minutes")).toBe(120_000)
  })

  it("reads the short form with a unit letter", () => {
    expect([ms("250ms"), ms("1.5s"), ms("30 s"), ms("5m"), ms("1h"), ms("2d"), ms("-2s")]).toEqual(
      [250, 1500, 30_000, 300_000, 3_600_000, 172_800_000, -2000])
    for (const text of ["5x", "ms", "5 mss", "s5"]) expect(ms(text), text).toBeUndefined()
  })
})
