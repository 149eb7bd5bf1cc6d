/**
 * The export of traces, metrics and logs over OTLP/HTTP (JSON) to an
 * OpenTelemetry collector, with effect's own exporters.
 *
 *   OTEL_ENABLED                 true: export traces (/v1/traces) and metrics (/v1/metrics)
 *   OTEL_EXPORTER_OTLP_ENDPOINT  the collector's base URL (default http://localhost:4318)
 *   OTEL_SERVICE_NAME            default: service.name of OTEL_RESOURCE_ATTRIBUTES, else SERVICE_NAME, else taskfiber
 *   OTEL_SERVICE_VERSION         default: service.version of OTEL_RESOURCE_ATTRIBUTES, else this package's version
 *   OTEL_RESOURCE_ATTRIBUTES     key=value,… (percent-encoded), on every span, metric and record
 *
 * LOG_FORMAT=otel sends the logs to /v1/logs of the same endpoint, whether or not
 * OTEL_ENABLED is set. Disabled, nothing is installed: effect's native tracer
 * stays, and the runtime, seeing it, makes no span per run.
 *
 * The HTTP client is the platform's fetch (FetchHttpClient): Node's fetch keeps
 * connections alive, and it adds no dependency to an embedding application.
 */
import { Config, type Duration, Effect, Layer, Logger, Option, References, Schema } from "effect"
import { FetchHttpClient } from "effect/http"
import { OtlpExporter, OtlpLogger, OtlpMetrics, OtlpSerialization, OtlpTracer } from "effect/observability"
import { packageVersion } from "../version.ts"
import * as Logging from "./Logging.ts"

/** The OTLP export settings. */
export interface TelemetryConfig {
  /** `OTEL_ENABLED`: export traces and metrics. */
  readonly enabled: boolean
  /** `OTEL_EXPORTER_OTLP_ENDPOINT`, without a trailing slash: `/v1/traces` … are appended. */
  readonly endpoint: string
  /** `OTEL_SERVICE_NAME`: the resource's `service.name`. */
  readonly serviceName: string
  /** `OTEL_SERVICE_VERSION`: the resource's `service.version`. */
  readonly serviceVersion: string | undefined
  /** `OTEL_RESOURCE_ATTRIBUTES` but `service.name` and `service.version`. */
  readonly resourceAttributes: Readonly<Record<string, string>>
  /** How often buffered telemetry is sent; effect's defaults when absent (logs 1 s, traces 5 s, metrics 10 s). */
  readonly exportInterval?: Duration.Input | undefined
}

/** OpenTelemetry's default OTLP/HTTP endpoint. */
export const defaultEndpoint = "http://localhost:4318"

/** A string setting; empty counts as unset. */
const text = Logging.text

const HttpUrl = Schema.String.check(Schema.makeFilter((s: string) => {
  if (s.trim() === "") return true
  try {
    const url = new URL(s.trim())
    return url.protocol === "http:" || url.protocol === "https:" || "expected an http:// or https:// URL"
  } catch {
    return "expected an http:// or https:// URL"
  }
}))

const resourceAttributes = Config.Record(Schema.StringFromUriComponent, Schema.StringFromUriComponent, "OTEL_RESOURCE_ATTRIBUTES", {
  trim: true,
  keepEmptyValues: true
}).pipe(Config.withDefault<Readonly<Record<string, string>>>({}))

/** The settings from the environment. */
export const config: Config.Config<TelemetryConfig> = Config.all({
  enabled: Logging.oneOf("OTEL_ENABLED", ["true", "false"]),
  endpoint: Config.schema(HttpUrl, "OTEL_EXPORTER_OTLP_ENDPOINT").pipe(Config.option, Config.map(Option.filter((s) => s.trim() !== ""))),
  serviceName: text("OTEL_SERVICE_NAME"),
  serviceVersion: text("OTEL_SERVICE_VERSION"),
  appServiceName: text("SERVICE_NAME"),
  attributes: resourceAttributes
}).pipe(Config.map((s): TelemetryConfig => {
  const { "service.name": attributeName, "service.version": attributeVersion, ...rest } = s.attributes
  return {
    enabled: Option.contains(s.enabled, "true"),
    endpoint: Option.getOrElse(s.endpoint, () => defaultEndpoint).trim().replace(/\/+$/, ""),
    serviceName: Option.getOrElse(s.serviceName, () => attributeName || Option.getOrElse(s.appServiceName, () => "taskfiber")),
    serviceVersion: Option.getOrElse(s.serviceVersion, () => attributeVersion || packageVersion),
    resourceAttributes: rest
  }
}))

/**
 * Logging for `logging` and, by `config`, the OTLP exporters: traces and metrics
 * when enabled, logs when `logging.format` is `otel` (redacted, each record with
 * the ids of the span current when it was logged). Closing the layer flushes what
 * is buffered (each exporter waits at most 3 seconds); `OtlpExporter.Flusher`
 * flushes on demand (a no-op when nothing exports).
 */
export const layerWith = (
  config: TelemetryConfig,
  logging: Logging.LoggingConfig,
  output: Logging.Output = Logging.stderr
): Layer.Layer<OtlpExporter.Flusher> => {
  const resource = {
    serviceName: config.serviceName,
    serviceVersion: config.serviceVersion,
    attributes: config.resourceAttributes
  }
  const url = (signal: string) => `${config.endpoint}/v1/${signal}`
  const interval = config.exportInterval === undefined ? {} : { exportInterval: config.exportInterval }
  // The exporters log their own failures where they are built: inside the
  // logging layer, so those lines take its format and level (and in `otel` go to
  // stderr only, never to the OTLP logger).
  const console = Logging.layerWith(logging, output)
  const logs = logging.format === "otel"
    ? Layer.mergeAll(
      Logger.layer([
        Logging.exporterDiagnostics(output),
        Effect.map(
          OtlpLogger.make({ url: url("logs"), resource, ...interval }),
          (otlp) => Logging.withoutExporterDiagnostics(Logging.redacting(otlp))
        )
      ]),
      Layer.succeed(References.MinimumLogLevel, logging.level)
    ).pipe(Layer.provide(console))
    : console
  const exporters = config.enabled
    ? Layer.mergeAll(
      OtlpTracer.layer({ url: url("traces"), resource, ...interval }),
      OtlpMetrics.layer({ url: url("metrics"), resource, ...interval })
    ).pipe(Layer.provide(logs))
    : Layer.empty
  return Layer.mergeAll(logs, exporters).pipe(
    Layer.provideMerge(OtlpExporter.layerFlusher),
    Layer.provide([OtlpSerialization.layerJson, FetchHttpClient.layer])
  )
}

/** {@link layerWith} the environment's settings ({@link config}, `Logging.config`). */
export const layer: Layer.Layer<OtlpExporter.Flusher, Config.ConfigError> = Layer.unwrap(Effect.gen(function*() {
  return layerWith(yield* config, yield* Logging.config)
}))
