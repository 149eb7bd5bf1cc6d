/**
 * Record batch v2 (magic 2) as the broker sees it: a header it validates and
 * rewrites the base offset of, and records it never needs to open — kafkajs encodes
 * and decodes keys, values, headers and compression itself.
 *
 * Layout (byte offsets): baseOffset int64 @0, batchLength int32 @8,
 * partitionLeaderEpoch int32 @12, magic int8 @16, crc uint32 @17 (CRC-32C of
 * everything from @21 to the end), attributes int16 @21, lastOffsetDelta int32 @23,
 * firstTimestamp int64 @27, maxTimestamp int64 @35, producerId int64 @43,
 * producerEpoch int16 @51, baseSequence int32 @53, recordCount int32 @57, records @61.
 */
import { crc32c } from "./wire.ts"
import { ErrorCode } from "./protocol.ts"

const HEADER_SIZE = 61
const LENGTH_FIELD_END = 12
const CRC_COVERED_FROM = 21

/** One stored batch: its bytes (base offset already rewritten) and its offset range. */
export interface StoredBatch {
  readonly baseOffset: bigint
  readonly lastOffset: bigint
  readonly maxTimestamp: bigint
  readonly bytes: Buffer
}

/** A batch from a produce request, checked but not yet placed in a log. */
export interface IncomingBatch {
  readonly bytes: Buffer
  readonly recordCount: number
  readonly maxTimestamp: bigint
}

/**
 * Splits a produce request's records field into batches and checks each one:
 * magic 2 and a matching CRC-32C; anything else is refused as a whole, like Kafka
 * refuses the partition's whole write.
 */
export const parseIncomingBatches = (
  records: Buffer,
): { readonly batches: IncomingBatch[] } | { readonly error: number } => {
  const batches: IncomingBatch[] = []
  let at = 0
  while (at < records.length) {
    if (records.length - at < HEADER_SIZE) return { error: ErrorCode.CORRUPT_MESSAGE }
    const batchLength = records.readInt32BE(at + 8)
    const end = at + LENGTH_FIELD_END + batchLength
    if (batchLength < HEADER_SIZE - LENGTH_FIELD_END || end > records.length) {
      return { error: ErrorCode.CORRUPT_MESSAGE }
    }
    const bytes = records.subarray(at, end)
    // Old message sets (magic 0/1) would have no headers; kafkajs only sends them to
    // brokers advertising Produce < 3, which this one does not.
    if (bytes.readInt8(16) !== 2) return { error: ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT }
    if (bytes.readUInt32BE(17) !== crc32c(bytes.subarray(CRC_COVERED_FROM))) {
      return { error: ErrorCode.CORRUPT_MESSAGE }
    }
    batches.push({
      bytes,
      recordCount: bytes.readInt32BE(23) + 1,
      maxTimestamp: bytes.readBigInt64BE(35),
    })
    at = end
  }
  if (batches.length === 0) return { error: ErrorCode.CORRUPT_MESSAGE }
  return { batches }
}

/**
 * A copy of the batch with its base offset set: the CRC does not cover the base
 * offset, so the checksum the producer computed stays valid.
 */
export const placeBatch = (batch: IncomingBatch, baseOffset: bigint): StoredBatch => {
  const bytes = Buffer.from(batch.bytes)
  bytes.writeBigInt64BE(baseOffset, 0)
  return {
    baseOffset,
    lastOffset: baseOffset + BigInt(batch.recordCount - 1),
    maxTimestamp: batch.maxTimestamp,
    bytes,
  }
}
