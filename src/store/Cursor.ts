/**
 * Page cursors: the last row's key as base64url JSON, opaque to the caller. One
 * that does not decode is an {@link InvalidCursor}, never the first page again: a
 * client paging with a mangled cursor would otherwise start over, forever. An
 * empty one is no cursor: the first page (`?cursor=` of a client with none yet).
 */
import { Data, Effect } from "effect"

/** A cursor that does not decode (the API's 400, the binary's exit 1). */
export class InvalidCursor extends Data.TaggedError("InvalidCursor")<{ readonly cursor: string }> {
  override get message(): string {
    const shown = this.cursor.length > 80 ? `${this.cursor.slice(0, 80)}…` : this.cursor
    return `the cursor ${JSON.stringify(shown)} is not one a page gave: pass the previous page's cursor as it came`
  }
}

/** The cursor of a page that ended at `key`. */
export const encode = (key: unknown): string => Buffer.from(JSON.stringify(key)).toString("base64url")

/** The key `cursor` carries, when `accept` takes it; none without a cursor. */
export const decode = <A>(cursor: string | undefined, accept: (key: unknown) => key is A): Effect.Effect<A | undefined, InvalidCursor> => {
  if (cursor === undefined || cursor === "") return Effect.succeed(undefined)
  try {
    const key: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    if (accept(key)) return Effect.succeed(key)
  } catch {
    // not base64url JSON: refused below
  }
  return Effect.fail(new InvalidCursor({ cursor }))
}
