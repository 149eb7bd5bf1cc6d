/**
 * Redaction of values bound for logs: secret-named keys masked whole at any depth,
 * secrets inside strings masked, structures cut at a bounded depth and at cycles.
 */
import { describe, expect, it } from "@effect/vitest"
import { Redacted } from "effect"
import { isSecretKey, redactEntry, redactSecrets, redactValue } from "../../src/domain/Redact.ts"

describe("Redact", () => {
  it("keys naming a secret, in any case and spelling", () => {
    expect(["password", "dbPassword", "PASSWD", "access_token", "apiKey", "api-key", "Authorization", "clientSecret", "cookie"].filter(isSecretKey))
      .toHaveLength(9)
    expect(["taskId", "attempt", "workerId", "host", "keyspace"].filter(isSecretKey)).toEqual([])
  })

  it("text: basic credentials and api_key pairs besides URL passwords, bearer tokens and password pairs", () => {
    expect(redactSecrets("Authorization: Basic dXNlcjpwYXNz")).toBe("Authorization: Basic ***")
    expect(redactSecrets("GET /x?api_key=k123&page=2")).toBe("GET /x?api_key=***&page=2")
    expect(redactSecrets("redis://:s3cret@cache:6379 bearer abc.def")).toBe("redis://:***@cache:6379 bearer ***")
  })

  it("values: masked under secret keys at any depth, strings redacted, errors as one line, Redacted as itself", () => {
    const value = {
      user: { name: "ada", password: { nested: "deep" } },
      list: ["postgres://u:pw@h/db", { token: 42 }],
      error: new Error("failed with secret=abc"),
      hidden: Redacted.make("never shown"),
      when: new Date(0)
    }
    expect(redactValue(value)).toEqual({
      user: { name: "ada", password: "***" },
      list: ["postgres://u:***@h/db", { token: "***" }],
      error: "Error: failed with secret=***",
      hidden: "<redacted>",
      when: new Date(0)
    })
    expect(redactEntry("apiKey", { any: "thing" })).toBe("***")
    expect(redactEntry("note", "token=xyz")).toBe("token=***")
  })

  it("cycles and depth are cut, shared objects are not mistaken for cycles", () => {
    const cyclic: Record<string, unknown> = { name: "loop" }
    cyclic.self = cyclic
    expect(redactValue(cyclic)).toEqual({ name: "loop", self: "[Object]" })
    const shared = { a: 1 }
    expect(redactValue([shared, shared])).toEqual([{ a: 1 }, { a: 1 }])
    let deep: unknown = "bottom"
    for (let i = 0; i < 20; i++) deep = [deep]
    expect(JSON.stringify(redactValue(deep))).toContain("[Array]")
  })
})
