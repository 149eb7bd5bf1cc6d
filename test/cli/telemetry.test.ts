/**
 * `taskfiber start` exporting over OTLP to a local receiver: with OTEL_ENABLED and
 * LOG_FORMAT=otel a task's run leaves its log records and spans on the collector
 * (flushed at shutdown at the latest), and stderr carries no log line.
 */
import { Effect, Exit, Scope } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { childDatabase, processes, uuid } from "../support/Cli.ts"
import * as OtlpReceiver from "../support/OtlpReceiver.ts"

const { spawnCli, run, killAll } = processes()
const env = childDatabase(killAll)
const scope = Scope.makeUnsafe()
afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

describe("taskfiber start with OTLP export", () => {
  it("a task's 'task settled' is a record naming it, with the service's resource; its run is a span; nothing is logged on stderr", async () => {
    const receiver = await Effect.runPromise(Scope.provide(scope)(OtlpReceiver.make))
    const start = spawnCli(["start"], {
      ...env,
      OTEL_ENABLED: "true",
      LOG_FORMAT: "otel",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SERVICE_NAME: "cli-otel-test"
    })
    await start.waitForStdout(/enqueue from another terminal/)
    const enqueued = await run(["enqueue", "echo", "{\"a\":1}"], env)
    expect(enqueued.code, enqueued.proc.output()).toBe(0)
    const id = enqueued.stdout[0]!
    expect(id).toMatch(uuid)

    const settled = await Effect.runPromise(receiver.awaitLogRecord((r) =>
      r.body?.stringValue === "task settled" && OtlpReceiver.attribute(r.attributes, "taskId") === id, "30 seconds"))
    expect(OtlpReceiver.attribute(settled.attributes, "outcome")).toBe("succeeded")
    expect(OtlpReceiver.attribute(settled.resource, "service.name")).toBe("cli-otel-test")

    start.child.kill("SIGTERM")
    expect(await start.exitWithin(15_000)).toBe(0)
    // Spans still buffered were flushed on the way out.
    const spans = receiver.spans()
    expect(spans.length, JSON.stringify(receiver.bodies("/v1/traces"))).toBeGreaterThan(0)
    expect(spans.every((s) => OtlpReceiver.attribute(s.resource, "service.name") === "cli-otel-test")).toBe(true)
    expect(start.stderr.filter((l) => l.trim() !== "")).toEqual([])
  }, 60_000)
})
