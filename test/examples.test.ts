import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Embedded from "../examples/embedded.ts"
import { program } from "../examples/store.ts"
import * as PgTaskStore from "../src/store/PgTaskStore.ts"
import * as TestDatabase from "./support/TestDatabase.ts"

it.effect("examples/store.ts runs against a real database", () =>
  program.pipe(
    Effect.map((r) => {
      expect(r.first.created).toBe(true)
      expect(r.again).toEqual({ id: r.first.id, created: false })
      expect(r.claimed).toEqual(["resize-image", "send-invoice"])
      expect(r.history).toEqual(["queued", "running", "succeeded"])
    }),
    Effect.provide(PgTaskStore.layer.pipe(Layer.provideMerge(TestDatabase.layer())))
  ), 60_000)

it.effect("examples/embedded.ts: taskfiber as a layer runs the app's jobs; a rolled-back sign-up leaves no task", () =>
  Embedded.program.pipe(
    Effect.map((r) => {
      const byType = (type: string) => r.results.filter((x) => x.type === type)
      expect(r.results).toHaveLength(3)
      expect(r.results.every((x) => x.outcome === "succeeded" && x.attempt === 1)).toBe(true)
      expect(byType("welcome-email").map((x) => x.result)).toEqual([{ sentTo: expect.stringMatching(/^ada\+.*@example\.com$/) }])
      expect(byType("thumbnail").map((x) => x.result)).toEqual([
        { thumbnail: "cat-128.png", width: 128 },
        { thumbnail: "dog-128.jpg", width: 128 }
      ])
      // The duplicate sign-up rolled back its user row and its welcome email.
      expect(r.users).toBe(1)
      expect(r.rolledBackTaskExists).toBe(false)
    }),
    Effect.provide(Embedded.layer(TestDatabase.layer()))
  ), 60_000)
