/**
 * A small OTLP/HTTP (JSON) receiver on 127.0.0.1 for tests of the exporters: it
 * keeps the bodies posted to each path and lets a test await the first N spans or
 * log records, woken by the request handler (no polling, no sleeps).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { Deferred, Duration, Effect, type Scope } from "effect"

/** An OTLP attribute: `{ key, value: { stringValue | intValue | … } }`. */
export interface KeyValue {
  readonly key: string
  readonly value: Record<string, unknown>
}

/** A received log record, and the resource of its batch. */
export interface LogRecord {
  readonly severityNumber?: number
  readonly severityText?: string
  readonly body?: Record<string, unknown>
  readonly attributes: ReadonlyArray<KeyValue>
  readonly traceId?: string
  readonly spanId?: string
  readonly resource: ReadonlyArray<KeyValue>
}

/** A received span, and the resource of its batch. */
export interface Span {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly attributes: ReadonlyArray<KeyValue>
  readonly resource: ReadonlyArray<KeyValue>
}

export interface OtlpReceiver {
  /** The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string
  /** Every JSON body posted to `path` (`/v1/logs`, `/v1/traces`, `/v1/metrics`), in order. */
  readonly bodies: (path: string) => ReadonlyArray<unknown>
  /** The log records received so far. */
  readonly logRecords: () => ReadonlyArray<LogRecord>
  /** The spans received so far. */
  readonly spans: () => ReadonlyArray<Span>
  /** The log records once at least `n` have arrived; fails after `timeout` (default 10 s). */
  readonly awaitLogRecords: (n: number, timeout?: Duration.Input) => Effect.Effect<ReadonlyArray<LogRecord>, Error>
  /** The spans once at least `n` have arrived; fails after `timeout` (default 10 s). */
  readonly awaitSpans: (n: number, timeout?: Duration.Input) => Effect.Effect<ReadonlyArray<Span>, Error>
  /** The first log record `where` accepts, once it has arrived; fails after `timeout` (default 10 s). */
  readonly awaitLogRecord: (where: (record: LogRecord) => boolean, timeout?: Duration.Input) => Effect.Effect<LogRecord, Error>
  /** The first span `where` accepts, once it has arrived; fails after `timeout` (default 10 s). */
  readonly awaitSpan: (where: (span: Span) => boolean, timeout?: Duration.Input) => Effect.Effect<Span, Error>
}

/** Bodies kept per path, and the largest body read: a runaway exporter fails the test, not the machine. */
const maxBodies = 10_000
const maxBodyBytes = 16 * 1024 * 1024

/** What a collector serves; any other path is a 404, as an endpoint with a wrong prefix meets. */
const signalPaths = new Set(["/v1/logs", "/v1/traces", "/v1/metrics"])

/** The value of attribute `key`, as its JSON value (`stringValue` …), if present. */
export const attribute = (attributes: ReadonlyArray<KeyValue>, key: string): unknown => {
  const value = attributes.find((a) => a.key === key)?.value
  return value === undefined ? undefined : Object.values(value)[0]
}

const records = (body: any): Array<LogRecord> =>
  (body?.resourceLogs ?? []).flatMap((rl: any) =>
    (rl.scopeLogs ?? []).flatMap((sl: any) =>
      (sl.logRecords ?? []).map((r: any) => ({ ...r, resource: rl.resource?.attributes ?? [] }))))

const spansOf = (body: any): Array<Span> =>
  (body?.resourceSpans ?? []).flatMap((rs: any) =>
    (rs.scopeSpans ?? []).flatMap((ss: any) => (ss.spans ?? []).map((s: any) => ({ ...s, resource: rs.resource?.attributes ?? [] }))))

/** Starts a receiver on a free port; it stops when the scope closes. */
export const make: Effect.Effect<OtlpReceiver, Error, Scope.Scope> = Effect.gen(function*() {
  const received = new Map<string, Array<unknown>>()
  const waiters = new Set<() => void>()
  const wake = () => {
    for (const w of waiters) w()
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBodyBytes) chunks.push(chunk)
    })
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0]!
      if (!signalPaths.has(path)) {
        res.writeHead(404).end()
        return
      }
      const list = received.get(path) ?? []
      received.set(path, list)
      if (size > maxBodyBytes || list.length >= maxBodies) {
        res.writeHead(413).end()
        return
      }
      try {
        list.push(JSON.parse(Buffer.concat(chunks).toString("utf8")))
      } catch {
        res.writeHead(400).end()
        return
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
      wake()
    })
  }

  const server = createServer(handle)
  const port = yield* Effect.callback<number, Error>((resume) => {
    server.once("error", (e) => resume(Effect.fail(e)))
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(Effect.succeed(typeof address === "object" && address ? address.port : 0))
    })
  })
  yield* Effect.addFinalizer(() =>
    Effect.callback<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

  const bodies = (path: string) => received.get(path) ?? []
  const logRecords = () => bodies("/v1/logs").flatMap(records)
  const spans = () => bodies("/v1/traces").flatMap(spansOf)

  /** Waits until `current()` has `n` items, checked after every request. */
  const awaitCount = <A>(what: string, current: () => ReadonlyArray<A>) => (n: number, timeout: Duration.Input = "10 seconds") =>
    Effect.gen(function*() {
      const enough = yield* Deferred.make<ReadonlyArray<A>>()
      const check = () => {
        const items = current()
        if (items.length >= n) Deferred.doneUnsafe(enough, Effect.succeed(items))
      }
      waiters.add(check)
      check()
      return yield* Deferred.await(enough).pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => Effect.fail(new Error(`timed out waiting for ${n} ${what}; received ${current().length}: ${JSON.stringify(current())}`))
        }),
        Effect.ensuring(Effect.sync(() => waiters.delete(check)))
      )
    })

  return {
    url: `http://127.0.0.1:${port}`,
    bodies,
    logRecords,
    spans,
    awaitLogRecords: awaitCount("log records", logRecords),
    awaitSpans: awaitCount("spans", spans),
    awaitLogRecord: (where, timeout) =>
      Effect.map(awaitCount("matching log record", () => logRecords().filter(where))(1, timeout), (found) => found[0]!),
    awaitSpan: (where, timeout) => Effect.map(awaitCount("matching span", () => spans().filter(where))(1, timeout), (found) => found[0]!)
  }
})
