/**
 * The admin HTTP API's settings, and who may call it.
 *
 *   ADMIN_TOKEN                 the bearer token of every call that changes state (redacted: never logged)
 *   ADMIN_READ_TOKEN_REQUIRED   `true`: reads need it too (default false)
 *   ADMIN_MAX_BODY_BYTES        the largest request body, refused with 413 before it is parsed (default 1 MiB)
 *
 * Without `ADMIN_TOKEN`, calls that change state are allowed only when the server
 * listens on loopback (`HTTP_HOST` 127.0.0.1, ::1 or localhost): there only this
 * machine's users reach it. On any other address they are refused (403) until a
 * token is set, so opening the port never opens the queue.
 *
 * Without a token the loopback server trusts whoever reaches it, so a browser on
 * this machine must not reach it on a web page's behalf:
 * - a call that changes state from a page of another origin is refused (403): any
 *   page could otherwise cancel a task with a plain form post (a POST without a
 *   body needs no CORS preflight);
 * - a request whose `Host` is not a loopback name is refused (403), reads too: a
 *   page whose domain an attacker re-pointed at 127.0.0.1 (DNS rebinding) is the
 *   same origin as the server.
 * With a token, neither applies: a browser never adds the bearer header on its
 * own, so a page cannot borrow it. Clients that are not browsers send no
 * `Origin` or `Sec-Fetch-Site` and name the host they dialled.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { Config, Option, Redacted, Schema } from "effect"

/** What {@link config} reads. */
export interface AdminConfig {
  readonly token: Option.Option<Redacted.Redacted<string>>
  readonly readTokenRequired: boolean
  readonly maxBodyBytes: number
}

/** `ADMIN_TOKEN`, `ADMIN_READ_TOKEN_REQUIRED`, `ADMIN_MAX_BODY_BYTES`. */
export const config: Config.Config<AdminConfig> = Config.all({
  token: Config.Redacted("ADMIN_TOKEN").pipe(
    Config.option,
    Config.map(Option.filter((t) => Redacted.value(t).trim() !== ""))
  ),
  readTokenRequired: Config.Boolean("ADMIN_READ_TOKEN_REQUIRED").pipe(Config.withDefault(false)),
  maxBodyBytes: Config.schema(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 104_857_600 })), "ADMIN_MAX_BODY_BYTES").pipe(
    Config.withDefault(1024 * 1024)
  )
})

/** A host that only this machine reaches. */
export const isLoopback = (host: string): boolean => {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1")
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/**
 * Whether a browser sent the request from a page of another origin: its
 * `Sec-Fetch-Site` (sent to https and loopback servers) is neither `same-origin`
 * nor `none` (typed by the user); without one, its `Origin` names another host
 * than `Host` (default ports aside).
 */
export const isCrossOrigin = (headers: Readonly<Record<string, string | undefined>>): boolean => {
  const site = headers["sec-fetch-site"]?.trim().toLowerCase()
  if (site !== undefined && site !== "") return site !== "same-origin" && site !== "none"
  const origin = headers["origin"]?.trim()
  if (origin === undefined || origin === "") return false
  try {
    const from = new URL(origin)
    return from.host !== new URL(`${from.protocol}//${(headers["host"] ?? "").trim()}`).host
  } catch {
    // `null` (a sandboxed page, a redirect), garbage, or no Host: not this origin
    return true
  }
}

/** The host name of a `Host` header (`127.0.0.1:8080`, `[::1]:8080`, `localhost`), without its port. */
export const hostName = (hostHeader: string | undefined): string => {
  const h = (hostHeader ?? "").trim()
  const bracketed = /^\[([^\]]*)\]/.exec(h)
  return bracketed ? bracketed[1]! : h.replace(/:\d*$/, "")
}

/** What {@link decide} answers. */
export type Decision = "allow" | "unauthorized" | "forbidden" | "cross-origin" | "foreign-host"

/**
 * Whether a call may go on: `write` (it changes state) or a read, the token the
 * server has (none: see module doc), the one presented, the address it listens
 * on, and where the request says it comes from and goes to.
 */
export const decide = (input: {
  readonly write: boolean
  readonly token: Option.Option<Redacted.Redacted<string>>
  readonly presented: string | undefined
  readonly readTokenRequired: boolean
  readonly loopback: boolean
  /** The request came from a page of another origin ({@link isCrossOrigin}). */
  readonly crossOrigin: boolean
  /** The request's `Host` names a loopback host ({@link hostName}, {@link isLoopback}). */
  readonly loopbackHost: boolean
}): Decision => {
  if (Option.isNone(input.token) && input.loopback) {
    if (!input.loopbackHost) return "foreign-host"
    if (input.write && input.crossOrigin) return "cross-origin"
  }
  const guarded = input.write || input.readTokenRequired
  if (!guarded) return "allow"
  if (Option.isNone(input.token)) return input.loopback ? "allow" : "forbidden"
  return input.presented !== undefined && tokensEqual(input.presented, Redacted.value(input.token.value)) ? "allow" : "unauthorized"
}

/** Constant-time comparison: the digests are of equal length whatever the tokens' lengths. */
export const tokensEqual = (presented: string, expected: string): boolean =>
  timingSafeEqual(createHash("sha256").update(presented).digest(), createHash("sha256").update(expected).digest())
