/**
 * Kafka's primitive wire types: big-endian integers, int16-prefixed strings,
 * int32-prefixed bytes and arrays (length -1 = null), zig-zag varints, CRC-32C.
 * Only the non-flexible encodings: every API version the test broker advertises is
 * older than the "flexible" (compact, tagged-field) versions.
 */

/** Thrown on a request that ends before its fields do; the connection is closed. */
export class WireError extends Error {}

/** Reads Kafka primitives from a buffer, front to back. */
export class Reader {
  private readonly buffer: Buffer
  private offset: number

  constructor(buffer: Buffer, offset = 0) {
    this.buffer = buffer
    this.offset = offset
  }

  get remaining(): number {
    return this.buffer.length - this.offset
  }

  private take(size: number): number {
    if (this.offset + size > this.buffer.length) {
      throw new WireError(`need ${size} bytes at ${this.offset}, have ${this.remaining}`)
    }
    const at = this.offset
    this.offset += size
    return at
  }

  int8(): number {
    return this.buffer.readInt8(this.take(1))
  }
  boolean(): boolean {
    return this.int8() !== 0
  }
  int16(): number {
    return this.buffer.readInt16BE(this.take(2))
  }
  int32(): number {
    return this.buffer.readInt32BE(this.take(4))
  }
  uint32(): number {
    return this.buffer.readUInt32BE(this.take(4))
  }
  int64(): bigint {
    return this.buffer.readBigInt64BE(this.take(8))
  }

  /** A nullable int16-length UTF-8 string. */
  string(): string | null {
    const length = this.int16()
    if (length < 0) return null
    const at = this.take(length)
    return this.buffer.toString("utf8", at, at + length)
  }

  /** A string the protocol does not allow to be null; null reads as "". */
  requiredString(): string {
    return this.string() ?? ""
  }

  /** Nullable int32-length bytes (a view into the request, not a copy). */
  bytes(): Buffer | null {
    const length = this.int32()
    if (length < 0) return null
    const at = this.take(length)
    return this.buffer.subarray(at, at + length)
  }

  /** A nullable int32-count array; null reads as []. */
  array<A>(item: (reader: Reader) => A): A[] {
    return this.nullableArray(item) ?? []
  }

  nullableArray<A>(item: (reader: Reader) => A): A[] | null {
    const count = this.int32()
    if (count < 0) return null
    const items: A[] = []
    for (let i = 0; i < count; i++) items.push(item(this))
    return items
  }

  /** A zig-zag varint (record fields inside record batches). */
  varint(): number {
    let raw = 0
    let shift = 0
    for (;;) {
      const byte = this.buffer.readUInt8(this.take(1))
      raw |= (byte & 0x7f) << shift
      if ((byte & 0x80) === 0) break
      shift += 7
      if (shift > 28) throw new WireError("varint longer than 5 bytes")
    }
    return (raw >>> 1) ^ -(raw & 1)
  }
}

/** Builds a Kafka message from primitives; `toBuffer` joins the pieces once. */
export class Writer {
  private readonly chunks: Buffer[] = []
  private size = 0

  get length(): number {
    return this.size
  }

  private push(chunk: Buffer): this {
    this.chunks.push(chunk)
    this.size += chunk.length
    return this
  }

  private fixed(size: number, write: (buffer: Buffer) => void): this {
    const buffer = Buffer.allocUnsafe(size)
    write(buffer)
    return this.push(buffer)
  }

  int8(value: number): this {
    return this.fixed(1, (b) => b.writeInt8(value))
  }
  boolean(value: boolean): this {
    return this.int8(value ? 1 : 0)
  }
  int16(value: number): this {
    return this.fixed(2, (b) => b.writeInt16BE(value))
  }
  int32(value: number): this {
    return this.fixed(4, (b) => b.writeInt32BE(value))
  }
  int64(value: bigint): this {
    return this.fixed(8, (b) => b.writeBigInt64BE(value))
  }

  string(value: string | null): this {
    if (value === null) return this.int16(-1)
    const encoded = Buffer.from(value, "utf8")
    return this.int16(encoded.length).push(encoded)
  }

  bytes(value: Buffer | null): this {
    if (value === null) return this.int32(-1)
    return this.int32(value.length).push(value)
  }

  /** Raw bytes with no length prefix. */
  raw(value: Buffer): this {
    return this.push(value)
  }

  array<A>(items: ReadonlyArray<A>, item: (writer: Writer, value: A) => void): this {
    this.int32(items.length)
    for (const value of items) item(this, value)
    return this
  }

  varint(value: number): this {
    let raw = ((value << 1) ^ (value >> 31)) >>> 0
    const bytes: number[] = []
    while (raw > 0x7f) {
      bytes.push((raw & 0x7f) | 0x80)
      raw >>>= 7
    }
    bytes.push(raw)
    return this.push(Buffer.from(bytes))
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.size)
  }
}

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): record batch v2 uses it
// instead of the zlib CRC-32 of the old message sets.
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/** CRC-32C of `data`, as an unsigned 32-bit number. */
export const crc32c = (data: Uint8Array): number => {
  let crc = 0xffffffff
  for (let i = 0; i < data.length; i++) {
    crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8)
  }
  return (crc ^ 0xffffffff) >>> 0
}
