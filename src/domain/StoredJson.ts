/**
 * Values as PostgreSQL's jsonb stores them. A run's result, progress and checkpoint
 * are encoded once, by the run that produced them, before they join anything shared:
 * a value that cannot be stored fails that run alone, with an error that says why,
 * never a completion batch (which fails every task in it) nor the loop that writes
 * it (an encoding that throws inside a statement's template kills its fiber).
 *
 * @since 0.1.0
 */
import { UnstorableValue } from "./Errors.ts"

/**
 * JSON text that jsonb accepts, made by {@link encode}.
 *
 * @since 0.1.0
 */
export class EncodedJson {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
}

/**
 * `null` (also what `undefined`, a function or a symbol encode to).
 *
 * @since 0.1.0
 */
export const jsonNull: EncodedJson = new EncodedJson("null")

// JSON.stringify writes a `\u` escape only for a control character or an unpaired
// surrogate (well-formed JSON.stringify, ES2019); jsonb refuses \u0000 and unpaired
// surrogates. An odd run of backslashes before the `u` makes an escape; an even one
// is escaped backslashes followed by a plain `u`.
const refused = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i

const reasonOf = (error: unknown): string => {
  try {
    return error instanceof Error ? error.message.split("\n")[0]! : String(error)
  } catch {
    return "JSON.stringify threw"
  }
}

/**
 * The deepest nesting a stored value may have. Recursive encoders and decoders
 * (JSON.stringify, a schema's decode) exhaust the stack somewhere past a few
 * thousand levels; no real payload comes near 1000.
 *
 * @since 0.1.0
 */
export const maxDepth = 1000

/**
 * Whether JSON `text` nests objects or arrays deeper than `limit`: one pass over
 * the structure, strings jumped over. Text shorter than 2 × `limit` cannot nest
 * that deep, so the small values of the hot paths (a run's result, a progress
 * report) are not scanned at all. A bulk enqueue's 1,000-row text (114 KB) took
 * 250–300 µs read character by character, 170–180 µs jumping from quote to quote
 * with `indexOf` (the strings are most of it: ids, types, payload fields).
 *
 * @since 0.1.0
 */
export const nestedDeeperThan = (text: string, limit: number = maxDepth): boolean => {
  if (text.length <= 2 * limit) return false
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34) {
      // To the closing quote: the next one preceded by an even run of backslashes.
      for (;;) {
        i = text.indexOf("\"", i + 1)
        if (i === -1) return false
        let b = i - 1
        while (text.charCodeAt(b) === 92) b--
        if ((i - 1 - b) % 2 === 0) break
      }
    } else if (c === 91 || c === 123) {
      if (++depth > limit) return true
    } else if (c === 93 || c === 125) depth--
  }
  return false
}

const tooDeep = `nested deeper than ${maxDepth} levels`

/**
 * Encodes `value` for a jsonb column, or says why it cannot be stored. Total: it
 * never throws, whatever `value` is (a throwing `toJSON` or getter included).
 *
 * @since 0.1.0
 */
export const encode = (value: unknown, what: UnstorableValue["what"]): EncodedJson | UnstorableValue => {
  if (value === undefined || value === null) return jsonNull
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (error) {
    // JSON.stringify recurses: a value nested some thousands deep exhausts the stack.
    return new UnstorableValue({ what, reason: error instanceof RangeError ? tooDeep : reasonOf(error) })
  }
  if (text === undefined) return jsonNull
  if (nestedDeeperThan(text)) return new UnstorableValue({ what, reason: tooDeep })
  if (text.includes("\\u") && refused.test(text)) {
    return new UnstorableValue({ what, reason: "a string holds U+0000 or an unpaired surrogate, which jsonb refuses" })
  }
  return new EncodedJson(text)
}
