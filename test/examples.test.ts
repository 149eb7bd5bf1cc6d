import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { program } from "../examples/store.ts"
import * as TaskStore from "../src/store/TaskStore.ts"
import * as TestDatabase from "./support/TestDatabase.ts"

it.effect("examples/store.ts runs against a real database", () =>
  program.pipe(
    Effect.map((r) => {
      expect(r.first.created).toBe(true)
      expect(r.again).toEqual({ id: r.first.id, created: false })
      expect(r.claimed).toEqual(["resize-image", "send-invoice"])
      expect(r.history).toEqual(["queued", "running", "succeeded"])
    }),
    Effect.provide(TaskStore.layer.pipe(Layer.provideMerge(TestDatabase.layer())))
  ), 60_000)
