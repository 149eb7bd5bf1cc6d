/**
 * How taskfiber logs, for the binary and for an application that embeds it: one
 * line per entry on stderr (stdout belongs to the program), in the format and at
 * the level the environment asks for, with every secret masked.
 *
 *   LOG_FORMAT  simple (default; alias text) · structured (alias json) · otel
 *   LOG_LEVEL   trace, debug, info (default), warn|warning, error, fatal, none, all
 *   LOG_COLORS  auto (default: when stderr is a terminal and NO_COLOR is unset), true, false
 *   SERVICE_NAME  the `service` of structured lines (default taskfiber)
 *
 * `otel` sends log records over OTLP/HTTP instead: that logger is an exporter, so
 * it is built by `Telemetry.layerWith` beside the trace and metric exporters (same
 * endpoint, resource and shutdown flush). In that format nothing is written to
 * stderr but the exporters' own diagnostics (an unreachable collector, at Debug),
 * which never go to the OTLP logger, so a failing export cannot feed itself.
 */
import { Cause, Config, Effect, Layer, Logger, type LogLevel, Option, References, Schema } from "effect"
import { redactEntry, redactSecrets, redactValue } from "../domain/Redact.ts"

/** The shape of the log output. */
export type Format = "simple" | "structured" | "otel"

/** The logging settings. */
export interface LoggingConfig {
  /** `LOG_FORMAT`. */
  readonly format: Format
  /** `LOG_LEVEL`: entries below it are not even formatted. */
  readonly level: LogLevel.LogLevel
  /** `LOG_COLORS` (`NO_COLOR` turns `auto` off): colours of the simple format, by level. */
  readonly colors: "auto" | boolean
  /** `SERVICE_NAME`: names the service in structured lines. */
  readonly serviceName: string
}

/** The defaults: simple lines at Info, coloured on a terminal. */
export const defaults: LoggingConfig = { format: "simple", level: "Info", colors: "auto", serviceName: "taskfiber" }

/** `LOG_LEVEL`'s words. */
export const levels: Readonly<Record<string, LogLevel.LogLevel>> = {
  all: "All", trace: "Trace", debug: "Debug", info: "Info", warn: "Warn", warning: "Warn",
  error: "Error", fatal: "Fatal", none: "None"
}

const formats: Readonly<Record<string, Format>> = {
  simple: "simple", structured: "structured", otel: "otel", text: "simple", json: "structured"
}

/**
 * A setting spelled one of `words` (any case); empty counts as unset. A wrong
 * value is a ConfigError naming the variable and the words.
 */
export const oneOf = (name: string, words: ReadonlyArray<string>): Config.Config<Option.Option<string>> =>
  Config.schema(
    Schema.String.check(Schema.makeFilter((s: string) =>
      s.trim() === "" || words.includes(s.trim().toLowerCase()) || `expected one of ${words.join(", ")}`
    )),
    name
  ).pipe(
    Config.map((s) => s.trim().toLowerCase()),
    Config.option,
    Config.map(Option.filter((s) => s !== ""))
  )

/** `LOG_LEVEL` as set, if it is: a command may pick its own default when it is not. */
export const levelSetting: Config.Config<Option.Option<LogLevel.LogLevel>> = oneOf("LOG_LEVEL", Object.keys(levels)).pipe(
  Config.map(Option.map((word) => levels[word]!))
)

/** A string setting; empty counts as unset. */
/** A text setting, trimmed; empty counts as unset. */
export const text = (name: string) =>
  Config.String(name).pipe(Config.option, Config.map(Option.filter((s) => s.trim() !== "")), Config.map(Option.map((s) => s.trim())))

/** The settings from the environment (LOG_FORMAT, LOG_LEVEL, LOG_COLORS, NO_COLOR, SERVICE_NAME). */
export const config: Config.Config<LoggingConfig> = Config.all({
  format: oneOf("LOG_FORMAT", Object.keys(formats)),
  level: levelSetting,
  colors: oneOf("LOG_COLORS", ["auto", "true", "false"]),
  noColor: text("NO_COLOR"),
  serviceName: text("SERVICE_NAME")
}).pipe(Config.map((s): LoggingConfig => {
  const colors = Option.getOrElse(s.colors, () => "auto")
  return {
    format: Option.match(s.format, { onNone: () => defaults.format, onSome: (f) => formats[f]! }),
    level: Option.getOrElse(s.level, () => defaults.level),
    colors: colors === "auto" ? (Option.isSome(s.noColor) ? false : "auto") : colors === "true",
    serviceName: Option.getOrElse(s.serviceName, () => defaults.serviceName)
  }
}))

// ---------------------------------------------------------------------------
// output

/** Where lines go: stderr, or a test's buffer. */
export interface Output {
  /** Writes one line, its newline included. */
  readonly write: (line: string) => void
  /** Whether a terminal reads it (`LOG_COLORS=auto`). */
  readonly isTTY: boolean
}

/** The process's stderr. */
export const stderr: Output = {
  write: (line) => {
    process.stderr.write(line)
  },
  get isTTY() {
    return process.stderr.isTTY === true
  }
}

// ---------------------------------------------------------------------------
// one entry, redacted

/** What every format shows of an entry, secrets masked. */
interface Entry {
  /** The message's words: its strings, numbers and errors, joined by spaces. */
  readonly text: string
  /** The annotations, then the fields of the message's objects. */
  readonly fields: Record<string, unknown>
  readonly spans: ReadonlyArray<readonly [label: string, startMillis: number]>
}

const isRecord = (u: unknown): u is Record<string, unknown> => {
  if (typeof u !== "object" || u === null || Array.isArray(u)) return false
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

/** JSON of a value (bigints as strings), or its `String` when JSON has none. */
const json = (u: unknown): string => JSON.stringify(u, (_, v) => typeof v === "bigint" ? v.toString() : v) ?? String(u)

const entryOf = (options: Logger.Options<unknown>): Entry => {
  const fields: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(options.fiber.getRef(References.CurrentLogAnnotations))) {
    fields[key] = redactEntry(key, value)
  }
  const words: Array<string> = []
  for (const part of Array.isArray(options.message) ? options.message : [options.message]) {
    if (isRecord(part)) {
      for (const [key, value] of Object.entries(part)) fields[key] = redactEntry(key, value)
    } else {
      const safe = redactValue(part)
      words.push(typeof safe === "string" ? safe : json(safe))
    }
  }
  return { text: words.join(" "), fields, spans: options.fiber.getRef(References.CurrentLogSpans) }
}

/** The cause in one line: each error's name and the first line of its message. */
const causeLine = (cause: Cause.Cause<unknown>): string =>
  redactSecrets(Cause.prettyErrors(cause).map((e) => `${e.name}: ${e.message.split("\n", 1)[0]}`).join("; "))

/** An entry's level as the lines show it. */
const levelLabel = (level: LogLevel.LogLevel) => level.toUpperCase()

// ---------------------------------------------------------------------------
// simple

const ansi = (codes: string) => (s: string) => `\x1b[${codes}m${s}\x1b[0m`
const gray = ansi("90")
const levelColors: Partial<Record<LogLevel.LogLevel, (s: string) => string>> = {
  Trace: gray, Debug: ansi("34"), Info: ansi("32"), Warn: ansi("33"), Error: ansi("31"), Fatal: ansi("1;37;101")
}

/**
 * A value of a `key=value` pair: a string quoted when it has spaces, quotes or `=`
 * (or is empty); anything else as its JSON, which is one line.
 */
const pairValue = (u: unknown): string => {
  if (typeof u !== "string") return u instanceof Date ? u.toISOString() : json(u)
  return u === "" || /[\s"=]/.test(u) ? JSON.stringify(u) : u
}
const pairKey = (key: string) => key.replace(/[\s="]/g, "_")

/**
 * Human lines: `2025-01-03T14:22:47.570Z INFO  task settled taskId=… attempt=1
 * run=12ms cause="Boom: bad input"`. A cause is its errors' first lines: a stack
 * trace is many lines, and the line's reader wants what went wrong (the
 * structured format carries the whole cause).
 */
export const simpleLogger = (options: { readonly colors: boolean; readonly output: Output }): Logger.Logger<unknown, void> =>
  Logger.make((log) => {
    const entry = entryOf(log)
    const paint = options.colors ? (levelColors[log.logLevel] ?? String) : String
    let line = `${options.colors ? gray(log.date.toISOString()) : log.date.toISOString()} ${paint(levelLabel(log.logLevel).padEnd(5))} ${
      entry.text.replace(/\r?\n/g, "\\n")
    }`
    for (const [key, value] of Object.entries(entry.fields)) line += ` ${pairKey(key)}=${pairValue(value)}`
    const now = log.date.getTime()
    for (const [label, start] of entry.spans) line += ` ${pairKey(label)}=${now - start}ms`
    if (log.cause.reasons.length > 0) line += ` cause=${pairValue(causeLine(log.cause))}`
    options.output.write(line + "\n")
  })

// ---------------------------------------------------------------------------
// structured

/**
 * One JSON object a line: `timestamp`, `level`, `message`, `service`, `fiber`,
 * `traceId` and `spanId` of the current span, every annotation and field of the
 * message, `spans` (log spans: label → milliseconds) and `cause` (the whole
 * pretty cause, stack included). The named fields win over an annotation of the
 * same name.
 */
export const structuredLogger = (options: { readonly serviceName: string; readonly output: Output }): Logger.Logger<unknown, void> =>
  Logger.make((log) => {
    const entry = entryOf(log)
    const line: Record<string, unknown> = {
      timestamp: log.date.toISOString(),
      level: levelLabel(log.logLevel),
      message: entry.text,
      service: options.serviceName,
      fiber: `#${log.fiber.id}`
    }
    const span = log.fiber.cache.span
    if (span !== undefined) {
      line.traceId = span.traceId
      line.spanId = span.spanId
    }
    for (const [key, value] of Object.entries(entry.fields)) if (!(key in line)) line[key] = value
    if (entry.spans.length > 0) {
      const now = log.date.getTime()
      line.spans = Object.fromEntries(entry.spans.map(([label, start]) => [label, now - start]))
    }
    if (log.cause.reasons.length > 0) line.cause = redactSecrets(Cause.pretty(log.cause))
    options.output.write(json(line) + "\n")
  })

// ---------------------------------------------------------------------------
// redaction for loggers that read the entry themselves

const redactedError = (e: Error): Error => {
  const safe = new Error(redactSecrets(e.message))
  safe.name = e.name
  safe.stack = redactSecrets(e.stack ?? `${e.name}: ${e.message}`)
  return safe
}

/** The cause with its errors' names kept and their messages and stacks redacted. */
const redactedCause = (cause: Cause.Cause<unknown>): Cause.Cause<unknown> =>
  cause.reasons.length === 0
    ? cause
    : Cause.fromReasons(Cause.prettyErrors(cause).map((e) => Cause.die(redactedError(e)).reasons[0]!))

/**
 * The entry as `logger` must see it, in the shape of the formats above: the
 * message is its words, its objects' fields join the annotations, all redacted.
 * Loggers such as effect's OtlpLogger read the annotations from the fiber, so the
 * fiber they get is a view whose annotations are these.
 */
const redactedOptions = (options: Logger.Options<unknown>): Logger.Options<unknown> => {
  const fiber = options.fiber
  const entry = entryOf(options)
  const view = Object.create(fiber, {
    getRef: { value: (ref: unknown) => ref === References.CurrentLogAnnotations ? entry.fields : fiber.getRef(ref as never) }
  }) as typeof fiber
  return { ...options, message: entry.text, cause: redactedCause(options.cause), fiber: view }
}

/**
 * `logger` fed only redacted entries (message words as the message, its objects'
 * fields as annotations): for any logger the formats above do not cover.
 */
export const redacting = <A>(logger: Logger.Logger<unknown, A>): Logger.Logger<unknown, A> =>
  Logger.make((options) => logger.log(redactedOptions(options)))

/** Log entries as events of the current span (effect's tracer logger), redacted. */
const spanEvents: Logger.Logger<unknown, void> = Logger.make((options) => {
  const span = options.fiber.cache.span
  if (span === undefined || span._tag === "ExternalSpan") return
  Logger.tracerLogger.log(redactedOptions(options))
})

/** The OTLP exporters annotate their own logs (a failed export) with this package. */
const isExporterDiagnostic = (options: Logger.Options<unknown>) =>
  options.fiber.getRef(References.CurrentLogAnnotations)["package"] === "@effect/opentelemetry"

/** `logger` for every entry but the OTLP exporters' own. */
export const withoutExporterDiagnostics = <A>(logger: Logger.Logger<unknown, A | void>): Logger.Logger<unknown, A | void> =>
  Logger.make((options) => isExporterDiagnostic(options) ? undefined : logger.log(options))

/** Only the OTLP exporters' own entries, as simple lines: what `otel` writes to stderr. */
export const exporterDiagnostics = (output: Output): Logger.Logger<unknown, void> => {
  const simple = simpleLogger({ colors: false, output })
  return Logger.make((options) => isExporterDiagnostic(options) ? simple.log(options) : undefined)
}

// ---------------------------------------------------------------------------
// layers

/**
 * The loggers for `config` writing to `output`. `simple` and `structured` also
 * record entries as events of the current span (redacted), as effect's default
 * does; `otel` leaves that to its records, which carry the span's ids.
 */
export const loggers = (config: LoggingConfig, output: Output = stderr): ReadonlyArray<Logger.Logger<unknown, void>> => {
  switch (config.format) {
    case "simple":
      return [simpleLogger({ colors: config.colors === "auto" ? output.isTTY : config.colors, output }), spanEvents]
    case "structured":
      return [structuredLogger({ serviceName: config.serviceName, output }), spanEvents]
    case "otel":
      return [exporterDiagnostics(output)]
  }
}

/**
 * Installs the loggers of `config` (replacing effect's default, which writes
 * multi-line entries to stdout) and its minimum level. For `otel`, use
 * `Telemetry.layerWith`, which includes this layer and adds the OTLP logger.
 */
export const layerWith = (config: LoggingConfig, output: Output = stderr): Layer.Layer<never> =>
  Layer.mergeAll(
    Logger.layer(loggers(config, output)),
    Layer.succeed(References.MinimumLogLevel, config.level)
  )

/** {@link layerWith} the environment's settings ({@link config}). */
export const layer: Layer.Layer<never, Config.ConfigError> = Layer.unwrap(Effect.gen(function*() {
  return layerWith(yield* config)
}))
