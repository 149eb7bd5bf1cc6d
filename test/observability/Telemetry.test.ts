/**
 * The OTLP export settings (defaults, the service's name and version, resource
 * attributes, a wrong value naming its variable) and the exporters against a local
 * OTLP receiver: a span reaches /v1/traces when OTEL_ENABLED, closing the layer
 * flushes what is buffered, and disabled, effect's native tracer stays.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Cause, ConfigProvider, Context, Effect, Exit, Layer, Metric, Tracer } from "effect"
import { OtlpExporter } from "effect/observability"
import * as Logging from "../../src/observability/Logging.ts"
import * as Telemetry from "../../src/observability/Telemetry.ts"
import { tracingIn } from "../../src/observability/Tracing.ts"
import * as OtlpReceiver from "../support/OtlpReceiver.ts"
import { packageVersion } from "../../src/version.ts"

const parse = (env: Record<string, string>) => Effect.runSyncExit(Telemetry.config.parse(ConfigProvider.fromEnv({ env })))

const settings = (env: Record<string, string>) => {
  const exit = parse(env)
  if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
  return exit.value
}

const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version

/** Logs to a buffer the test does not read: these tests are about the exporters. */
const quietLogging = Logging.layerWith({ ...Logging.defaults, level: "Warn" }, { write: () => {}, isTTY: false })

describe("Telemetry.config", () => {
  it("defaults: disabled, OpenTelemetry's endpoint, service taskfiber at this package's version", () => {
    expect(settings({})).toEqual({
      enabled: false,
      endpoint: "http://localhost:4318",
      serviceName: "taskfiber",
      serviceVersion: version,
      resourceAttributes: {}
    })
    expect(packageVersion).toBe(version)
  })

  it("OTEL_SERVICE_NAME, else service.name of OTEL_RESOURCE_ATTRIBUTES, else SERVICE_NAME; the endpoint without a trailing slash", () => {
    expect(settings({ SERVICE_NAME: "billing" }).serviceName).toBe("billing")
    expect(settings({ SERVICE_NAME: "billing", OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs" }).serviceName).toBe("from-attrs")
    expect(settings({ SERVICE_NAME: "billing", OTEL_SERVICE_NAME: "otel-name", OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs" }).serviceName)
      .toBe("otel-name")
    const s = settings({
      OTEL_ENABLED: "TRUE",
      OTEL_EXPORTER_OTLP_ENDPOINT: "https://collector:4318/",
      OTEL_SERVICE_VERSION: "9.9.9",
      OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod, team=a%20b,service.version=1.0"
    })
    expect(s).toEqual({
      enabled: true,
      endpoint: "https://collector:4318",
      serviceName: "taskfiber",
      serviceVersion: "9.9.9",
      resourceAttributes: { "deployment.environment": "prod", team: "a b" }
    })
    expect(settings({ OTEL_RESOURCE_ATTRIBUTES: "service.version=1.0" }).serviceVersion).toBe("1.0")
  })

  it("a wrong OTEL_ENABLED or endpoint fails naming the variable", () => {
    for (
      const [env, expected] of [
        [{ OTEL_ENABLED: "maybe" }, /expected one of true, false[\s\S]*OTEL_ENABLED/],
        [{ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }, /expected an http:\/\/ or https:\/\/ URL[\s\S]*OTEL_EXPORTER_OTLP_ENDPOINT/]
      ] as const
    ) {
      const exit = parse(env)
      expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toMatch(expected)
    }
  })
})

describe("Telemetry.layerWith", () => {
  it.live("OTEL_ENABLED: a span reaches /v1/traces with the service's resource, and the runtime sees a tracer", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.make
      const config = { ...settings({ OTEL_ENABLED: "true", OTEL_RESOURCE_ATTRIBUTES: "team=runtime" }), endpoint: receiver.url }
      const { span, traced } = yield* Effect.gen(function*() {
        const traced = tracingIn(yield* Effect.context<never>())
        const span = yield* Effect.currentSpan.pipe(Effect.withSpan("enqueue", { attributes: { queue: "default" } }))
        yield* Effect.flatMap(OtlpExporter.Flusher, (f) => f.flush)
        return { span, traced }
      }).pipe(Effect.provide(Telemetry.layerWith(config, Logging.defaults).pipe(Layer.provide(quietLogging))))
      expect(traced).toBe(true)
      const [received] = yield* receiver.awaitSpans(1)
      expect(received).toMatchObject({ name: "enqueue", traceId: span.traceId, spanId: span.spanId })
      expect(OtlpReceiver.attribute(received!.attributes, "queue")).toBe("default")
      expect(OtlpReceiver.attribute(received!.resource, "service.name")).toBe("taskfiber")
      expect(OtlpReceiver.attribute(received!.resource, "service.version")).toBe(version)
      expect(OtlpReceiver.attribute(received!.resource, "team")).toBe("runtime")
    }))

  it.live("closing the layer flushes the spans and metrics still buffered", () =>
    Effect.gen(function*() {
      const receiver = yield* OtlpReceiver.make
      const config = { ...settings({ OTEL_ENABLED: "true" }), endpoint: receiver.url, exportInterval: "1 hour" as const }
      const runs = Metric.counter("telemetry_test_runs_total")
      yield* Metric.update(runs, 1).pipe(
        Effect.withSpan("buffered"),
        Effect.provide(Telemetry.layerWith(config, Logging.defaults).pipe(Layer.provide(quietLogging)))
      )
      // The layer is closed: what arrived was sent by its finalizers.
      expect(receiver.spans().map((s) => s.name)).toEqual(["buffered"])
      expect(JSON.stringify(receiver.bodies("/v1/metrics"))).toContain("telemetry_test_runs_total")
    }))

  it.effect("disabled: effect's native tracer stays, so the runtime makes no span per run", () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>().pipe(
        Effect.provide(Telemetry.layerWith(settings({}), Logging.defaults).pipe(Layer.provide(quietLogging)))
      )
      expect(Context.get(context, Tracer.Tracer)).toBe(Tracer.nativeTracer)
      expect(tracingIn(context)).toBe(false)
    }))
})
