/**
 * Ids of new tasks: UUIDv7 (RFC 9562), a millisecond timestamp followed by random
 * bits, so that tasks created together sit together in the primary key and in the
 * history's (task_id, seq) key. With random (v4) ids every insert, and every
 * non-HOT update of a task, lands on a random leaf page of both indexes: more
 * pages dirtied, more full-page images in the WAL each commit must flush, more
 * cache misses. Producers may still choose any uuid of their own.
 *
 * Within one millisecond the order is random (the 74 random bits), which is all a
 * b-tree needs: inserts stay on the rightmost pages.
 */
import { randomFillSync } from "node:crypto"

const hex: ReadonlyArray<string> = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))
const bytes = new Uint8Array(16)
// Random bytes are drawn 4 kB at a time (as crypto.randomUUID caches its entropy):
// one randomFillSync per id cost 3.5 µs, a tenth of a bulk enqueue's time per task.
const pool = new Uint8Array(4096)
let poolAt = pool.length

/** A new UUIDv7 string (version 7, variant 10xx). */
export const newTaskId = (now: number = Date.now()): string => {
  if (poolAt + 10 > pool.length) {
    randomFillSync(pool)
    poolAt = 0
  }
  // Copied byte by byte: a subarray view per id would be one more allocation.
  for (let i = 0; i < 10; i++) bytes[6 + i] = pool[poolAt + i]!
  poolAt += 10
  let ms = now
  for (let i = 5; i >= 0; i--) {
    bytes[i] = ms % 256
    ms = Math.floor(ms / 256)
  }
  bytes[6] = (bytes[6]! & 0x0f) | 0x70
  bytes[8] = (bytes[8]! & 0x3f) | 0x80
  const h = (i: number) => hex[bytes[i]!]!
  return `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${h(6)}${h(7)}-${h(8)}${h(9)}-${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`
}
