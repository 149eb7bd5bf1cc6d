/**
 * Secrets never reach logs or error messages: passwords in connection URLs,
 * bearer (and basic) credentials and `password=…`-style pairs in text are
 * replaced by `***`, and so is every value under a key that names a secret
 * (`password`, `token`, `apiKey`, `authorization` …), whatever it contains.
 */

const urlPassword = /([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@/\s]*)@/gi
const bearer = /((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+/gi
const keyValue = /((?:password|passwd|pwd|token|secret|api[_-]?key)\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)/gi

/** The text with URL passwords, bearer tokens and `password=…` pairs masked. */
export const redactSecrets = (text: string): string =>
  text.replace(urlPassword, "$1***@").replace(bearer, "$1***").replace(keyValue, "$1***")

/** A key whose value is a secret: `password`, `dbPassword`, `access_token`, `apiKey`, `Authorization` … */
const secretKey = /passw(?:or)?d|pwd|token|secret|authori[sz]ation|api[_-]?key|credential|cookie|private[_-]?key/i

/** Whether values under `key` are masked whole. */
export const isSecretKey = (key: string): boolean => secretKey.test(key)

/** The mask of a whole value. */
export const mask = "***"

/** Deeper structures than this are cut (logs are no place for them, and a cycle ends here too). */
const maxDepth = 8

/**
 * A copy of `value` safe to log: strings redacted ({@link redactSecrets}), values
 * under secret keys masked, arrays and plain objects walked (to a bounded depth,
 * cycles cut), errors turned into `Name: message`. Other values pass unchanged.
 */
export const redactValue = (value: unknown): unknown => walk(value, 0, new Set())

const walk = (value: unknown, depth: number, seen: Set<object>): unknown => {
  if (typeof value === "string") return redactSecrets(value)
  if (value === null || typeof value !== "object") return value
  if (value instanceof Error) return redactSecrets(`${value.name}: ${value.message}`)
  if (value instanceof Date) return value
  if (seen.has(value) || depth >= maxDepth) return Array.isArray(value) ? "[Array]" : "[Object]"
  seen.add(value)
  try {
    if (Array.isArray(value)) return value.map((v) => walk(v, depth + 1, seen))
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) {
      // A class instance: what it says of itself (Redacted says "<redacted>").
      const json = typeof (value as { toJSON?: unknown }).toJSON === "function" ? (value as { toJSON: () => unknown }).toJSON() : undefined
      return json !== undefined && json !== value ? walk(json, depth + 1, seen) : redactSecrets(String(value))
    }
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = isSecretKey(k) ? mask : walk(v, depth + 1, seen)
    return out
  } finally {
    seen.delete(value)
  }
}

/** The value of an entry named `key`, safe to log: masked whole under a secret key. */
export const redactEntry = (key: string, value: unknown): unknown => isSecretKey(key) ? mask : redactValue(value)
