import { redactSecrets } from "../../src/domain/Redact.ts"
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import {
  Classification,
  classify,
  isRetryable,
  LastError,
  MAX_MESSAGE_LENGTH,
  toLastError,
  withOverrides
} from "../../src/domain/Classification.ts"
import {
  LeaseExpired,
  PayloadInvalid,
  PermanentError,
  TaskCancelled,
  TaskTimeout,
  TransientError,
  UnknownTaskType
} from "../../src/domain/Errors.ts"

const isClassification = Schema.is(Classification)
const isLastError = Schema.is(LastError)
// What PostgreSQL refuses in jsonb text.
const unstorable = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

const throwingHandler: ProxyHandler<object> = new Proxy({}, {
  get: () => () => {
    throw new Error("trap")
  }
})

class CustomError extends Error {
  override name = "CustomError"
}

const hostile = (): ReadonlyArray<readonly [string, unknown]> => {
  const cyclic: Record<string, unknown> = { a: 1 }
  cyclic["self"] = cyclic
  const cyclicError = new Error("")
  Object.assign(cyclicError, { loop: cyclicError })
  const revocable = Proxy.revocable({}, {})
  revocable.revoke()
  const boom = () => {
    throw new Error("getter")
  }
  return [
    ["null", null],
    ["undefined", undefined],
    ["NaN", Number.NaN],
    ["number", 42],
    ["empty string", ""],
    ["string", "plain failure"],
    ["symbol", Symbol("s")],
    ["bigint", 10n],
    ["function", () => 1],
    ["object with throwing getters", Object.defineProperties({}, {
      _tag: { get: boom, enumerable: true },
      message: { get: boom, enumerable: true },
      permanent: { get: boom, enumerable: true }
    })],
    ["proxy throwing on every trap", new Proxy({}, throwingHandler)],
    ["function proxy throwing on every trap", new Proxy(() => 1, throwingHandler)],
    ["revoked proxy", revocable.proxy],
    ["cyclic object", cyclic],
    ["cyclic error", cyclicError],
    ["null-prototype object", Object.create(null)],
    ["bigint field", { n: 1n }],
    ["throwing toJSON and toString", { toJSON: boom, toString: boom, [Symbol.toPrimitive]: boom }],
    ["Error subclass", new CustomError("custom")],
    ["TypeError", new TypeError("type")],
    ["AggregateError", new AggregateError([new Error("a")], "many")],
    ["non-string tag", { _tag: 7, retryable: false }],
    ["DatabaseError with non-boolean retryable", { _tag: "DatabaseError", retryable: "no" }]
  ]
}

const expectStorable = (record: LastError) => {
  expect(isLastError(record)).toBe(true)
  expect(record.message.length).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH)
  expect(unstorable.test(record.message)).toBe(false)
  expect(unstorable.test(record.tag)).toBe(false)
  expect(JSON.parse(JSON.stringify(record))).toEqual(record)
}

describe("classify", () => {
  it("maps taskfiber's errors to their classification", () => {
    expect(classify(new TaskTimeout({ taskId: "t", timeoutMs: 5 }))).toBe("timeout")
    expect(classify(new TaskCancelled({ taskId: "t" }))).toBe("cancelled")
    expect(classify(new LeaseExpired({ taskId: "t", workerId: "w" }))).toBe("transient")
    expect(classify(new PayloadInvalid({ taskType: "mail", path: "to", message: "Expected string" }))).toBe("permanent")
    expect(classify(new PermanentError({ message: "no" }))).toBe("permanent")
    expect(classify(new TransientError({ message: "again" }))).toBe("transient")
    expect(classify(new UnknownTaskType({ taskType: "x" }))).toBe("permanent")
  })

  it("maps a DatabaseError by its retryable flag and honours permanent: true", () => {
    expect(classify({ _tag: "DatabaseError", retryable: true })).toBe("transient")
    expect(classify({ _tag: "DatabaseError", retryable: false })).toBe("permanent")
    expect(classify({ permanent: true })).toBe("permanent")
    expect(classify(Object.assign(new Error("x"), { permanent: true }))).toBe("permanent")
    expect(classify({ permanent: "yes" })).toBe("transient")
  })

  it("treats everything else as transient, even hostile values", () => {
    for (const [name, value] of hostile()) {
      expect([name, classify(value)]).toEqual([name, "transient"])
    }
  })

  it("retries transient and timeout failures only", () => {
    expect(Classification.literals.filter(isRetryable)).toEqual(["transient", "timeout"])
  })

  it.prop("is total on arbitrary JSON", { value: Schema.Json }, ({ value }) => {
    expect(isClassification(classify(value))).toBe(true)
  }, { arbitrary: { runs: 300 } })

  it.prop(
    "is total on hostile wrappings of arbitrary JSON",
    { value: Schema.Json, tag: Schema.String, which: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 3 })) },
    ({ tag, value, which }) => {
      const wrapped = [
        new Proxy({ value }, throwingHandler),
        Object.defineProperty({ value, _tag: tag }, "permanent", { get: () => { throw new Error("no") } }),
        (() => {
          const o: Record<string, unknown> = { value, _tag: tag }
          o["cause"] = o
          return o
        })(),
        Object.assign(new Error(tag), { value, _tag: tag })
      ][which]
      expect(isClassification(classify(wrapped))).toBe(true)
      expectStorable(toLastError(wrapped, classify(wrapped)))
    }
  )
})

describe("withOverrides", () => {
  const timeoutIsPermanent = withOverrides((e) => e instanceof TaskTimeout ? "permanent" : undefined)

  it("asks the override first and falls back to classify", () => {
    expect(timeoutIsPermanent(new TaskTimeout({ taskId: "t", timeoutMs: 1 }))).toBe("permanent")
    expect(timeoutIsPermanent(new PermanentError({ message: "x" }))).toBe("permanent")
    expect(timeoutIsPermanent("boom")).toBe("transient")
  })

  it("falls back when the override throws or answers nonsense", () => {
    const throwing = withOverrides(() => {
      throw new Error("bad override")
    })
    const nonsense = withOverrides(() => "fatal" as unknown as Classification)
    expect(throwing(new TaskCancelled({ taskId: "t" }))).toBe("cancelled")
    expect(nonsense(new PermanentError({ message: "x" }))).toBe("permanent")
  })
})

describe("toLastError", () => {
  it("keeps tag and message of tagged errors and Error subclasses", () => {
    expect(toLastError(new PermanentError({ message: "card declined" }), "permanent")).toEqual({
      tag: "PermanentError",
      message: "card declined",
      classification: "permanent"
    })
    expect(toLastError(new CustomError("custom"), "transient")).toEqual({
      tag: "CustomError",
      message: "custom",
      classification: "transient"
    })
    expect(toLastError("plain", "transient")).toEqual({ tag: "UnknownError", message: "plain", classification: "transient" })
  })

  it("never stores a stack", () => {
    const error = new Error("boom")
    expect(toLastError(error, "transient").message).toBe("boom")
    const record = toLastError({ code: 1, stack: "SECRET at /srv/app.ts:1" }, "transient")
    expect(record.message).toBe("{\"code\":1}")
    expect(record.message).not.toContain("SECRET")
  })

  it("masks passwords in URLs and tokens before the message is stored", () => {
    const record = toLastError(new Error("GET https://bot:s3cr3t@api.example/x failed; Authorization: Bearer abc.def"), "transient")
    expect(record.message).not.toContain("s3cr3t")
    expect(record.message).not.toContain("abc.def")
    expect(record.message).toContain("https://bot:***@api.example/x")
  })

  it("caps the message and keeps it storable", () => {
    const long = toLastError(new Error("x".repeat(10_000)), "transient")
    expect(long.message.length).toBe(MAX_MESSAGE_LENGTH)
    const pairs = toLastError(new Error("😀".repeat(5_000)), "transient")
    expectStorable(pairs)
    expect(toLastError(new Error("a\u0000b\uD800c"), "transient").message).toBe("a\uFFFDb\uFFFDc")
  })

  it("is total and storable for hostile values", () => {
    for (const [, value] of hostile()) {
      expectStorable(toLastError(value, classify(value)))
    }
  })

  it.prop("is storable for any message text", { message: Schema.String, tag: Schema.String }, ({ message, tag }) => {
    const record = toLastError({ _tag: tag, message }, "transient")
    expectStorable(record)
    if (message !== "" && !unstorable.test(message) && message.length <= MAX_MESSAGE_LENGTH && redactSecrets(message) === message) {
      expect(record.message).toBe(message)
    }
  })
})
