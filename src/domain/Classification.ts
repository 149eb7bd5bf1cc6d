/**
 * Error classification: whether a failed run is retried, and how the error is
 * recorded in `tasks.last_error`.
 *
 * The default is `transient`: an error is retried unless something marks it
 * permanent, as in graphile-worker and Oban. A wrongly retried error costs a
 * few attempts; a wrongly abandoned one loses work.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { redactSecrets } from "./Redact.ts"
import type { TaskError } from "./Errors.ts"

/**
 * Schema of a classification.
 *
 * @since 0.1.0
 */
export const Classification = Schema.Literals(["transient", "permanent", "timeout", "cancelled"])

/**
 * What kind of failure an error is: `transient` and `timeout` are retried,
 * `permanent` and `cancelled` are not.
 *
 * @since 0.1.0
 */
export type Classification = typeof Classification.Type

/**
 * A function that classifies any value thrown or failed with.
 *
 * @since 0.1.0
 */
export type Classifier = (error: unknown) => Classification

/**
 * Whether a failure of this classification is worth another attempt.
 *
 * @since 0.1.0
 */
export const isRetryable = (classification: Classification): boolean =>
  classification === "transient" || classification === "timeout"

const byTag: ReadonlyMap<string, Classification> = new Map(Object.entries(
  {
    TaskTimeout: "timeout",
    TaskCancelled: "cancelled",
    LeaseExpired: "transient",
    PayloadInvalid: "permanent",
    PermanentError: "permanent",
    TransientError: "transient",
    UnknownTaskType: "permanent",
    UnstorableValue: "permanent"
  } satisfies { readonly [Tag in TaskError["_tag"]]: Classification }
))

const classifyUnsafe = (error: unknown): Classification => {
  if (error === null || (typeof error !== "object" && typeof error !== "function")) return "transient"
  const fields = error as { readonly [key: string]: unknown }
  const tag = fields["_tag"]
  if (typeof tag === "string") {
    const known = byTag.get(tag)
    if (known !== undefined) return known
    // DatabaseError (src/store) already knows which SQLSTATEs are worth a retry.
    if (tag === "DatabaseError" && typeof fields["retryable"] === "boolean") {
      return fields["retryable"] ? "transient" : "permanent"
    }
  }
  return fields["permanent"] === true ? "permanent" : "transient"
}

/**
 * The default classifier. Total: it never throws, whatever it is given
 * (proxies, throwing getters, cyclic objects, primitives).
 *
 * - taskfiber's own errors map to their fixed classification;
 * - an object tagged `DatabaseError` maps by its boolean `retryable`;
 * - an object with `permanent === true` is permanent;
 * - everything else, including values that cannot be inspected, is transient.
 *
 * @since 0.1.0
 */
export const classify: Classifier = (error) => {
  try {
    return classifyUnsafe(error)
  } catch {
    return "transient"
  }
}

const isClassification = Schema.is(Classification)

/**
 * A classifier that asks `overrides` first and falls back to {@link classify}
 * when it returns `undefined`, returns something that is not a
 * classification, or throws — so the result stays total.
 *
 * @since 0.1.0
 */
export const withOverrides = (overrides: (error: unknown) => Classification | undefined): Classifier => (error) => {
  try {
    const classification: unknown = overrides(error)
    if (isClassification(classification)) return classification
  } catch {
    // A broken override must not break classification: use the default.
  }
  return classify(error)
}

/**
 * Longest `message` kept in a {@link LastError}.
 *
 * @since 0.1.0
 */
export const MAX_MESSAGE_LENGTH = 2000

/**
 * Schema of the `last_error` jsonb column (and of `task_events.error`).
 *
 * @since 0.1.0
 */
export const LastError = Schema.Struct({
  tag: Schema.String,
  message: Schema.String,
  classification: Classification
})

/**
 * An error as stored: its tag, a bounded message, and its classification.
 *
 * @since 0.1.0
 */
export type LastError = typeof LastError.Type

// PostgreSQL rejects \u0000 and unpaired surrogates in jsonb text.
const unstorable = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

const bounded = (text: string, max: number): string => {
  const clean = text.replace(unstorable, "\uFFFD")
  if (clean.length <= max) return clean
  // Never cut a surrogate pair in half.
  const end = /[\uD800-\uDBFF]/.test(clean.charAt(max - 2)) ? max - 2 : max - 1
  return `${clean.slice(0, end)}…`
}

const attempt = <A>(f: () => A, fallback: A): A => {
  try {
    return f()
  } catch {
    return fallback
  }
}

const tagOf = (error: unknown): string => {
  if (error === null || (typeof error !== "object" && typeof error !== "function")) return "UnknownError"
  const fields = error as { readonly [key: string]: unknown }
  const tag = attempt(() => fields["_tag"], undefined)
  if (typeof tag === "string" && tag !== "") return tag
  const name = attempt(() => error instanceof Error ? error.name : undefined, undefined)
  return typeof name === "string" && name !== "" ? name : "UnknownError"
}

// The stack is never stored: it is long, and it can reveal paths and secrets.
const withoutStack = (key: string, value: unknown): unknown =>
  key === "stack" ? undefined : typeof value === "bigint" ? value.toString() : value

const messageOf = (error: unknown): string => {
  if (typeof error === "string") return error
  if (error === null || (typeof error !== "object" && typeof error !== "function")) return String(error)
  const message = attempt(() => (error as { readonly message?: unknown }).message, undefined)
  if (typeof message === "string" && message !== "") return message
  if (typeof error === "function") return attempt(() => `function ${error.name}`, "function")
  const json = attempt(() => JSON.stringify(error, withoutStack) as string | undefined, undefined)
  if (json !== undefined && json !== "{}") return json
  // Cyclic, empty, or a proxy that refuses to be read: say at least what it is.
  return attempt(() => String(error), "[object]")
}

/**
 * Turns any error into the `last_error` record. Total, like {@link classify};
 * the message is capped at {@link MAX_MESSAGE_LENGTH} characters, never
 * contains a stack trace, and has URL passwords and tokens masked (it is stored).
 *
 * @since 0.1.0
 */
export const toLastError = (error: unknown, classification: Classification): LastError => ({
  tag: bounded(tagOf(error), 255),
  message: bounded(redactSecrets(attempt(() => messageOf(error), "<unprintable error>")), MAX_MESSAGE_LENGTH),
  classification
})
