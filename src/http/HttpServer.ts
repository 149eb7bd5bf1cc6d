/**
 * The HTTP server (effect/http on Node): health and metrics for probes and
 * scrapers; the admin API adds its routes to the same router.
 *
 *   GET /health/live    200 while the process answers
 *   GET /health/ready   200 when it should be sent work, else 503 with the reasons (Readiness)
 *   GET /health         the health report (200 when HEALTHY or DEGRADED, else 503)
 *   GET /metrics        the metric registry in Prometheus text format
 *   GET /               the web dashboard (Dashboard; docs/admin.md)
 *
 *   /tasks, /dead-letters, /queues, /jobs, /openapi.json   the admin API (AdminApiServer; docs/admin.md)
 *
 * The probes and `/metrics` need no token; the admin API's rules are AdminConfig's.
 * `HTTP_PORT` (default 8080; 0: no server) and `HTTP_HOST` (default 127.0.0.1:
 * loopback only until an operator opens it). Requests are not logged one by one
 * (a scraper every 15 s would fill the log); the server's start is.
 */
import { createServer } from "node:http"
import { Config, Data, Effect, Layer, Schema } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { Health } from "../observability/Health.ts"
import { Readiness } from "../observability/Readiness.ts"
import * as AdminApiServer from "./AdminApiServer.ts"
import * as Dashboard from "./Dashboard.ts"

/** Where the server listens. */
export interface HttpConfig {
  /** `HTTP_PORT`; 0: no server. */
  readonly port: number
  /** `HTTP_HOST`. */
  readonly host: string
}

/** `HTTP_PORT` and `HTTP_HOST`. */
export const config: Config.Config<HttpConfig> = Config.all({
  port: Config.schema(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 })), "HTTP_PORT").pipe(Config.withDefault(8080)),
  host: Config.String("HTTP_HOST").pipe(
    Config.map((h) => h.trim()),
    Config.withDefault("127.0.0.1"),
    Config.map((h) => h === "" ? "127.0.0.1" : h)
  )
})

/** The server could not listen (the port is taken, the host is not this machine's). */
export class HttpServerUnavailable extends Data.TaggedError("HttpServerUnavailable")<{
  readonly host: string
  readonly port: number
  readonly cause: unknown
}> {
  override get message(): string {
    const code = (this.cause as { code?: unknown } | undefined)?.code ?? (this.cause as { cause?: { code?: unknown } } | undefined)?.cause?.code
    const why = code === "EADDRINUSE"
      ? "the port is in use by another program; set HTTP_PORT to a free port, or 0 for no server"
      : code === "EADDRNOTAVAIL"
      ? "the address is not this machine's; set HTTP_HOST"
      : String((this.cause as { message?: unknown } | undefined)?.message ?? this.cause)
    return `cannot serve HTTP on ${this.host}:${this.port}: ${why}`
  }
}

const json = (body: unknown, status = 200) => HttpServerResponse.jsonUnsafe(body, { status })

/** The probes' routes. */
export const healthRoutes = Layer.mergeAll(
  HttpRouter.add("GET", "/health/live", json({ status: "live" })),
  HttpRouter.add("GET", "/health/ready", Effect.gen(function*() {
    const report = yield* (yield* Readiness).check
    return json(report, report.ready ? 200 : 503)
  }))
)

/** The health report (Health): the latest sample judged, with its findings and recommendations. */
export const healthReportRoute = HttpRouter.add("GET", "/health", Effect.gen(function*() {
  const report = yield* (yield* Health).report
  return json(report, report.status === "HEALTHY" || report.status === "DEGRADED" ? 200 : 503)
}))

/** Every route of this module, and the dashboard's page. */
export const routes = Layer.mergeAll(healthRoutes, healthReportRoute, PrometheusMetrics.layerHttp({ path: "/metrics" }), Dashboard.routes)

/** {@link routes} and the admin API's, for a server listening on `host`. */
export const routesWith = (cfg: Pick<HttpConfig, "host">) => Layer.merge(routes, AdminApiServer.layer({ host: cfg.host }))

/** The server on `config`'s address with {@link routesWith}; no server when the port is 0. */
export const layerWith = (cfg: HttpConfig) =>
  cfg.port === 0
    ? Layer.empty
    // Node's server platform is loaded only for a server: 16 MB of RSS a worker
    // without one does not carry.
    : Layer.unwrap(Effect.map(Effect.promise(() => import("@effect/platform-node/NodeHttpServer")), (NodeHttpServer) =>
      HttpRouter.serve(routesWith(cfg), { disableLogger: true, disableListenLog: true }).pipe(
        Layer.provide(NodeHttpServer.layer(createServer, { port: cfg.port, host: cfg.host })),
        Layer.catchTag("ServeError", (error) => Layer.effectDiscard(Effect.fail(new HttpServerUnavailable({ host: cfg.host, port: cfg.port, cause: error.cause })))),
        Layer.tap(() => Effect.logInfo("http server listening", { url: `http://${cfg.host.includes(":") ? `[${cfg.host}]` : cfg.host}:${cfg.port}` }))
      )))

/** The server on `HTTP_PORT`/`HTTP_HOST`. */
export const layer = Layer.unwrap(Effect.map(config, layerWith))
