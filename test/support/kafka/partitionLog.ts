/**
 * One partition's in-memory log: stored record batches in offset order, and the
 * listeners a held Fetch registers to wake on the next append.
 */
import { placeBatch, type IncomingBatch, type StoredBatch } from "./recordBatch.ts"

export class PartitionLog {
  private readonly batches: StoredBatch[] = []
  private readonly appendListeners = new Set<() => void>()
  /** Offsets start at 0; nothing is ever deleted, so the log start stays 0. */
  readonly logStartOffset = 0n
  private nextOffset = 0n

  /** The offset the next record gets (all stored records are "committed" on one node). */
  get highWatermark(): bigint {
    return this.nextOffset
  }

  /** Stores the batches with consecutive offsets; returns the first batch's base offset. */
  append(batches: ReadonlyArray<IncomingBatch>): bigint {
    const baseOffset = this.nextOffset
    for (const batch of batches) {
      const stored = placeBatch(batch, this.nextOffset)
      this.batches.push(stored)
      this.nextOffset = stored.lastOffset + 1n
    }
    for (const listener of [...this.appendListeners]) listener()
    return baseOffset
  }

  /**
   * Whole batches from the one holding `fetchOffset` on, up to `maxBytes`. The first
   * batch may begin before `fetchOffset` — kafkajs drops the records before the
   * offset it asked for (consumer/batch.js) — and with `atLeastOne` it is returned
   * even when larger than `maxBytes`, so a big batch cannot stall a consumer.
   */
  read(fetchOffset: bigint, maxBytes: number, atLeastOne: boolean): Buffer {
    let low = 0
    let high = this.batches.length
    // First batch whose last offset is >= fetchOffset.
    while (low < high) {
      const mid = (low + high) >>> 1
      if (this.batches[mid]!.lastOffset < fetchOffset) low = mid + 1
      else high = mid
    }
    const picked: Buffer[] = []
    let size = 0
    for (let i = low; i < this.batches.length; i++) {
      const bytes = this.batches[i]!.bytes
      if (size + bytes.length > maxBytes && !(atLeastOne && picked.length === 0)) break
      picked.push(bytes)
      size += bytes.length
    }
    return Buffer.concat(picked, size)
  }

  /** The first offset of the first batch with a timestamp >= `timestamp` (batch granularity). */
  offsetForTimestamp(timestamp: bigint): bigint {
    const batch = this.batches.find((b) => b.maxTimestamp >= timestamp)
    return batch === undefined ? this.nextOffset : batch.baseOffset
  }

  /** Calls `listener` after every append until the returned function is called. */
  onAppend(listener: () => void): () => void {
    this.appendListeners.add(listener)
    return () => this.appendListeners.delete(listener)
  }
}
