/**
 * The log formats: their settings (aliases, any case, a wrong value naming its
 * variable), the exact shape of a simple and a structured line, colours, the ids of
 * the current span, and secrets in a message, an annotation and a cause masked in
 * every format, the OTLP records included (received by a local OTLP receiver).
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Data, Effect, Exit, Layer, Tracer } from "effect"
import { OtlpExporter } from "effect/observability"
import * as Logging from "../../src/observability/Logging.ts"
import * as Telemetry from "../../src/observability/Telemetry.ts"
import * as OtlpReceiver from "../support/OtlpReceiver.ts"
import { recordingTracer } from "../support/recordingTracer.ts"

/** An output that keeps its lines. */
const capture = (isTTY = false) => {
  const lines: Array<string> = []
  const output: Logging.Output = { write: (line) => void lines.push(line), isTTY }
  return { lines, output }
}

const parse = (env: Record<string, string>) => Effect.runSyncExit(Logging.config.parse(ConfigProvider.fromEnv({ env })))

const settings = (env: Record<string, string>) => {
  const exit = parse(env)
  if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
  return exit.value
}

class Refused extends Data.TaggedError("Refused")<{ readonly message: string }> {}

/** One entry of each secret kind: URL password, key=value pair, secret-named annotation and field, bearer token in a cause. */
const secrets = ["hunter2", "tok-in-pair", "annot-pw", "annot-key", "field-token", "bearer-in-cause"]
const leaky = Effect.logError(
  "connecting to postgres://app:hunter2@db.internal/app token=tok-in-pair",
  { accessToken: "field-token", host: "db.internal" },
  Cause.fail(new Refused({ message: "auth failed: Authorization: Bearer bearer-in-cause\n  at the gateway" }))
).pipe(Effect.annotateLogs({ password: "annot-pw", apiKey: "annot-key", taskId: "t-1" }))

const expectNoSecret = (text: string) => {
  for (const secret of secrets) expect(text).not.toContain(secret)
}

describe("Logging.config", () => {
  it("defaults: simple at Info, colours on a terminal, service taskfiber", () => {
    expect(settings({})).toEqual(Logging.defaults)
    expect(settings({ LOG_FORMAT: "", LOG_LEVEL: " ", SERVICE_NAME: "" })).toEqual(Logging.defaults)
  })

  it("LOG_FORMAT in any case, text and json as aliases of simple and structured", () => {
    const formats = ["simple", "TEXT", "Structured", " json ", "OTEL"].map((f) => settings({ LOG_FORMAT: f }).format)
    expect(formats).toEqual(["simple", "simple", "structured", "structured", "otel"])
  })

  it("a wrong LOG_FORMAT, LOG_LEVEL or LOG_COLORS fails naming the variable and the words it takes", () => {
    for (
      const [env, expected] of [
        [{ LOG_FORMAT: "xml" }, /expected one of simple, structured, otel, text, json[\s\S]*LOG_FORMAT/],
        [{ LOG_LEVEL: "loud" }, /expected one of all, trace, debug, info, warn, warning, error, fatal, none[\s\S]*LOG_LEVEL/],
        [{ LOG_COLORS: "sometimes" }, /expected one of auto, true, false[\s\S]*LOG_COLORS/]
      ] as const
    ) {
      const exit = parse(env)
      expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toMatch(expected)
    }
  })

  it("LOG_LEVEL words, warning as warn; LOG_COLORS; NO_COLOR turns auto off but not true; SERVICE_NAME", () => {
    expect(["trace", "DEBUG", "warning", "fatal", "none", "all"].map((l) => settings({ LOG_LEVEL: l }).level))
      .toEqual(["Trace", "Debug", "Warn", "Fatal", "None", "All"])
    expect(["auto", "TRUE", "false"].map((c) => settings({ LOG_COLORS: c }).colors)).toEqual(["auto", true, false])
    expect(settings({ NO_COLOR: "1" }).colors).toBe(false)
    expect(settings({ NO_COLOR: "1", LOG_COLORS: "true" }).colors).toBe(true)
    expect(settings({ SERVICE_NAME: "billing" }).serviceName).toBe("billing")
  })
})

describe("simple", () => {
  it.effect("one line: timestamp, level, message, annotations and fields as key=value (quoted with spaces), log spans, the cause's first line", () =>
    Effect.gen(function*() {
      const { lines, output } = capture()
      yield* Effect.gen(function*() {
        yield* Effect.logInfo("task settled", { attempt: 2, note: "two words", empty: "" }).pipe(
          Effect.annotateLogs({ taskId: "t-1", taskType: "echo" }),
          Effect.withLogSpan("run")
        )
        yield* Effect.logWarning("failed\nbadly", Cause.fail(new Refused({ message: "no route\nsecond line" })))
        yield* Effect.logDebug("below the level")
      }).pipe(Effect.provide(Logging.layerWith({ ...Logging.defaults, colors: false }, output)))
      // TestClock: the epoch.
      expect(lines).toEqual([
        `1970-01-01T00:00:00.000Z INFO  task settled taskId=t-1 taskType=echo attempt=2 note="two words" empty="" run=0ms\n`,
        `1970-01-01T00:00:00.000Z WARN  failed\\nbadly cause="Refused: no route"\n`
      ])
    }))

  it.effect("coloured by level with LOG_COLORS=true, or auto on a terminal; plain with false, or auto elsewhere", () =>
    Effect.gen(function*() {
      const run = (colors: Logging.LoggingConfig["colors"], isTTY: boolean) =>
        Effect.gen(function*() {
          const { lines, output } = capture(isTTY)
          yield* Effect.logInfo("hello").pipe(Effect.provide(Logging.layerWith({ ...Logging.defaults, colors }, output)))
          yield* Effect.logError("bad").pipe(Effect.provide(Logging.layerWith({ ...Logging.defaults, colors }, output)))
          return lines
        })
      for (const [colors, tty] of [[true, false], ["auto", true]] as const) {
        const [info, error] = yield* run(colors, tty)
        expect(info).toContain("\x1b[32mINFO \x1b[0m hello")
        expect(error).toContain("\x1b[31mERROR\x1b[0m bad")
      }
      for (const [colors, tty] of [[false, true], ["auto", false]] as const) {
        expect((yield* run(colors, tty)).join("")).not.toContain("\x1b[")
      }
    }))
})

describe("structured", () => {
  it.effect("one JSON object a line: timestamp, level, message, service, fiber, annotations and fields, spans, cause", () =>
    Effect.gen(function*() {
      const { lines, output } = capture()
      yield* Effect.logError("task failed", { attempt: 3 }, Cause.fail(new Refused({ message: "no route" }))).pipe(
        Effect.annotateLogs({ taskId: "t-1", workerId: "w-1", message: "an annotation does not replace the message" }),
        Effect.withLogSpan("run"),
        Effect.provide(Logging.layerWith({ ...Logging.defaults, format: "structured", serviceName: "billing" }, output))
      )
      expect(lines).toHaveLength(1)
      expect(lines[0]!.endsWith("\n") && lines[0]!.indexOf("\n")).toBe(lines[0]!.length - 1)
      const line = JSON.parse(lines[0]!)
      expect(line).toMatchObject({
        timestamp: "1970-01-01T00:00:00.000Z",
        level: "ERROR",
        message: "task failed",
        service: "billing",
        taskId: "t-1",
        workerId: "w-1",
        attempt: 3,
        spans: { run: 0 }
      })
      expect(line.fiber).toMatch(/^#\d+$/)
      expect(line.cause).toMatch(/^Refused: no route\n\s+at /)
      expect(line).not.toHaveProperty("traceId")
    }))

  it.effect("inside a span, traceId and spanId are the current span's", () =>
    Effect.gen(function*() {
      const { lines, output } = capture()
      const { tracer } = recordingTracer()
      const span = yield* Effect.gen(function*() {
        yield* Effect.log("inside")
        return yield* Effect.currentSpan
      }).pipe(
        Effect.withSpan("work"),
        Effect.provide(Layer.mergeAll(
          Logging.layerWith({ ...Logging.defaults, format: "structured" }, output),
          Layer.succeed(Tracer.Tracer, tracer)
        ))
      )
      expect(JSON.parse(lines[0]!)).toMatchObject({ message: "inside", traceId: span.traceId, spanId: span.spanId })
    }))
})

describe("redaction", () => {
  it.effect("simple and structured: no secret of the message, an annotation or the cause reaches the line", () =>
    Effect.gen(function*() {
      for (const format of ["simple", "structured"] as const) {
        const { lines, output } = capture()
        yield* leaky.pipe(Effect.provide(Logging.layerWith({ ...Logging.defaults, format, colors: false }, output)))
        expect(lines).toHaveLength(1)
        expectNoSecret(lines[0]!)
        expect(lines[0]).toContain("postgres://app:***@db.internal/app")
        expect(lines[0]).toContain("t-1")
        expect(lines[0]).toContain("db.internal")
      }
    }))

  it.effect("span events (effect's tracer logger) are redacted too", () =>
    Effect.gen(function*() {
      const { output } = capture()
      const { ended, tracer } = recordingTracer()
      yield* leaky.pipe(
        Effect.withSpan("work"),
        Effect.provide(Layer.mergeAll(Logging.layerWith(Logging.defaults, output), Layer.succeed(Tracer.Tracer, tracer)))
      )
      const events = ended.flatMap((s) => (s as unknown as { events: Array<unknown> }).events)
      expect(events).toHaveLength(1)
      expectNoSecret(JSON.stringify(events, (_, v) => typeof v === "bigint" ? String(v) : v))
    }))

  it.live("otel: the exported records carry body, severity, the span's ids and no secret; nothing goes to stderr", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.make
      const { lines, output } = capture()
      const telemetry = { ...settingsOf(receiver.url), enabled: false }
      const logging = { ...Logging.defaults, format: "otel" as const }
      const span = yield* Effect.gen(function*() {
        yield* Effect.logInfo("hello", { taskId: "t-9" })
        yield* leaky
        yield* Effect.logDebug("below the level")
        const span = yield* Effect.currentSpan
        yield* Effect.flatMap(OtlpExporter.Flusher, (f) => f.flush)
        return span
      }).pipe(Effect.withSpan("work"), Effect.provide(Telemetry.layerWith(telemetry, logging, output)))
      const records = yield* receiver.awaitLogRecords(2)
      expect(records).toHaveLength(2)
      const [hello, error] = records
      expect(hello).toMatchObject({ severityText: "Info", severityNumber: 9, body: { stringValue: "hello" } })
      expect(error).toMatchObject({ severityText: "Error", severityNumber: 17 })
      for (const record of records) {
        expect(record.traceId).toBe(span.traceId.padStart(32, "0"))
        expect(record.spanId).toBe(span.spanId)
        expect(OtlpReceiver.attribute(record.resource, "service.name")).toBe("taskfiber-test")
        expect(OtlpReceiver.attribute(record.resource, "service.version")).toBe("0.0.0-test")
      }
      expect(OtlpReceiver.attribute(hello!.attributes, "taskId")).toBe("t-9")
      expect(OtlpReceiver.attribute(error!.attributes, "taskId")).toBe("t-1")
      expect(OtlpReceiver.attribute(error!.attributes, "host")).toBe("db.internal")
      expect(OtlpReceiver.attribute(error!.attributes, "exception.type")).toBe("Refused")
      expect(OtlpReceiver.attribute(error!.attributes, "password")).toBe("***")
      expect(error!.body).toEqual({ stringValue: "connecting to postgres://app:***@db.internal/app token=***" })
      expectNoSecret(JSON.stringify(receiver.bodies("/v1/logs")))
      expect(lines).toEqual([])
    }))

  it.live("otel: the exporter's own failure is a Debug line on stderr, never an OTLP record", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.make
      const { lines, output } = capture()
      const telemetry = { ...settingsOf(`${receiver.url}/wrong-prefix`), enabled: false }
      yield* Effect.gen(function*() {
        yield* Effect.logInfo("lost")
        yield* Effect.flatMap(OtlpExporter.Flusher, (f) => f.flush)
      }).pipe(Effect.provide(Telemetry.layerWith(telemetry, { ...Logging.defaults, format: "otel", level: "Debug" }, output)))
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^\S+ DEBUG Disabling exporter for 60 seconds package=@effect\/opentelemetry module=OtlpLogger cause="\S+: /)
      expect(receiver.logRecords()).toEqual([])
    }))
})

/** Telemetry settings pointing at `endpoint`, exporting without waiting for the interval. */
const settingsOf = (endpoint: string): Telemetry.TelemetryConfig => ({
  enabled: true,
  endpoint,
  serviceName: "taskfiber-test",
  serviceVersion: "0.0.0-test",
  resourceAttributes: {}
})
