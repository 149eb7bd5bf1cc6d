import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { UnstorableValue } from "../../src/domain/Errors.ts"
import * as StoredJson from "../../src/domain/StoredJson.ts"

const textOf = (value: unknown) => {
  const e = StoredJson.encode(value, "result")
  return e instanceof StoredJson.EncodedJson ? e.text : e
}

describe("StoredJson", () => {
  it("encodes what jsonb stores; nothing, a function or a symbol is null", () => {
    expect(textOf({ a: [1, "x", true, null] })).toBe(`{"a":[1,"x",true,null]}`)
    expect(textOf(undefined)).toBe("null")
    expect(textOf(() => 1)).toBe("null")
    expect(textOf("a\u00e9\u{1F600}")).toBe(`"a\u00e9\u{1F600}"`)
    // An escaped backslash before a plain "u0000" is text, not an escape.
    expect(textOf("\\u0000")).toBe(`"\\\\u0000"`)
  })

  it("says why a value cannot be stored, and never throws", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const throwing = { toJSON: () => { throw new Error("no JSON for you") } }
    const cases: Array<[unknown, RegExp]> = [
      [{ n: 1n }, /BigInt/],
      [cyclic, /circular/i],
      [throwing, /no JSON for you/],
      [{ s: "a\u0000b" }, /U\+0000/],
      [{ ["k\u0000"]: 1 }, /U\+0000/],
      ["\uD800", /unpaired surrogate/],
      [["x\uDC00"], /unpaired surrogate/],
      [{ s: "\\\u0000" }, /U\+0000/]
    ]
    for (const [value, reason] of cases) {
      const e = StoredJson.encode(value, "progress")
      expect(e).toBeInstanceOf(UnstorableValue)
      expect((e as UnstorableValue).what).toBe("progress")
      expect((e as UnstorableValue).message).toMatch(reason)
    }
  })

  // Any string: encoded iff it holds no U+0000 and no unpaired surrogate, and then
  // the text decodes back to the same string.
  // Strings made of the pieces that matter: NUL, each half of a surrogate pair, a
  // whole pair, backslashes and "u" (escapes), plain letters.
  const Piece = Schema.Literals(["\u0000", "\uD83D", "\uDE00", "\uD83D\uDE00", "\\", "u", "0", "d8", "a"])
  it.prop("a string is refused exactly when jsonb would refuse it, else it round-trips", { pieces: Schema.Array(Piece) }, ({ pieces }) => {
    const s = pieces.join("")
    const refusable = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)
    const e = StoredJson.encode({ s, [s]: s }, "checkpoint")
    if (refusable) return e instanceof UnstorableValue
    return e instanceof StoredJson.EncodedJson && JSON.parse(e.text).s === s
  })
})

describe("nesting", () => {
  const nested = (depth: number): unknown => {
    let v: unknown = 1
    for (let i = 0; i < depth; i++) v = i % 2 === 0 ? [v] : { v }
    return v
  }

  // The scan agrees with the depth counted on the value itself, strings with quotes,
  // backslashes and brackets in them included (small limits, so short texts count).
  it.prop("the scan's depth is the value's", { value: Schema.Json, limit: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 4 })) }, ({ value, limit }) => {
    const depth = (v: unknown): number =>
      Array.isArray(v) ? 1 + Math.max(0, ...v.map(depth))
      : typeof v === "object" && v !== null ? 1 + Math.max(0, ...Object.values(v).map(depth))
      : 0
    const text = JSON.stringify(value)
    if (text.length <= 2 * limit) return
    expect(StoredJson.nestedDeeperThan(text, limit)).toBe(depth(value) > limit)
  })

  it("quotes after runs of backslashes end a string only when the run is even", () => {
    for (const s of ["\\", "\\\"", "a\\\\\"[[[", "\\\\"]) {
      expect(StoredJson.nestedDeeperThan(JSON.stringify([s, [[["x"]]]]), 3)).toBe(true)
      expect(StoredJson.nestedDeeperThan(JSON.stringify([s, [["x"]]]), 3)).toBe(false)
    }
  })

  it("a value nested 9,000 deep is refused with a reason, without exhausting the stack", () => {
    expect(StoredJson.nestedDeeperThan(JSON.stringify(nested(1001)))).toBe(true)
    const encoded = StoredJson.encode(nested(9000), "payload")
    expect(encoded).toBeInstanceOf(UnstorableValue)
    expect((encoded as UnstorableValue).reason).toBe("nested deeper than 1000 levels")
  })

  it("1000 levels are stored", () => {
    expect(StoredJson.nestedDeeperThan(JSON.stringify(nested(1000)))).toBe(false)
    // Brackets inside strings are text, not nesting.
    expect(StoredJson.nestedDeeperThan(JSON.stringify({ s: "[".repeat(5000) + "\\\"" + "{".repeat(5000) }))).toBe(false)
    expect(StoredJson.encode(nested(1000), "payload")).toBeInstanceOf(StoredJson.EncodedJson)
  })
})
