import { it, expect } from "@effect/vitest"
import { Effect, Schema } from "effect"
it.effect("smoke", () => Effect.gen(function*() { expect(yield* Effect.succeed(1)).toBe(1) }))
it.prop("prop", [Schema.Int], ([n]) => n + 0 === n)
