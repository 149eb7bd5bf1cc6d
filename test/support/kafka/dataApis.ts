/**
 * Metadata v4, CreateTopics v1, Produce v3, Fetch v4, ListOffsets v1: topics and
 * their logs. Field layouts follow kafkajs' request encoders and response decoders
 * (node_modules/kafkajs/src/protocol/requests/<api>/v<N>/).
 */
import { BrokerState, type Handler } from "./brokerState.ts"
import type { PartitionLog } from "./partitionLog.ts"
import { ErrorCode, NODE_ID } from "./protocol.ts"
import { parseIncomingBatches } from "./recordBatch.ts"
import { Writer } from "./wire.ts"

const indices = (count: number): number[] => Array.from({ length: count }, (_, i) => i)

export const metadata: Handler = (body, { state }) => {
  const requested = body.nullableArray((r) => r.requiredString())
  const allowAutoTopicCreation = body.boolean()
  const names = requested ?? [...state.topics.keys()]
  const topicErrors = new Map<string, number>()
  for (const name of names) {
    if (state.topics.has(name)) continue
    if (!BrokerState.isValidTopicName(name)) topicErrors.set(name, ErrorCode.INVALID_TOPIC_EXCEPTION)
    else if (allowAutoTopicCreation && state.autoCreateTopics) state.createTopic(name, state.defaultPartitions)
    else topicErrors.set(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
  }
  return new Writer()
    .int32(0) // throttle time
    .array([NODE_ID], (w, nodeId) => w.int32(nodeId).string(state.host).int32(state.port).string(null))
    .string("taskfiber-kafka-test-broker") // cluster id
    .int32(NODE_ID) // controller: kafkajs sends CreateTopics there
    .array(names, (w, name) => {
      w.int16(topicErrors.get(name) ?? ErrorCode.NONE)
        .string(name)
        .boolean(false) // internal
        .array(indices(state.topics.get(name)?.length ?? 0), (pw, partition) =>
          pw
            .int16(ErrorCode.NONE)
            .int32(partition)
            .int32(NODE_ID) // leader
            .array([NODE_ID], (rw, id) => rw.int32(id)) // replicas
            .array([NODE_ID], (rw, id) => rw.int32(id)), // in-sync replicas
        )
    })
}

export const createTopics: Handler = (body, { state }) => {
  const topics = body.array((r) => {
    const topic = r.requiredString()
    const numPartitions = r.int32()
    const replicationFactor = r.int16()
    const replicaAssignment = r.array((a) => ({ partition: a.int32(), replicas: a.array((x) => x.int32()) }))
    r.array((c) => [c.string(), c.string()]) // config entries: accepted, ignored
    return { topic, numPartitions, replicationFactor, replicaAssignment }
  })
  body.int32() // timeout
  const validateOnly = body.boolean()
  const results = topics.map(({ topic, numPartitions, replicationFactor, replicaAssignment }) => {
    const partitions = numPartitions === -1 && replicaAssignment.length > 0 ? replicaAssignment.length : numPartitions
    const fail = (errorCode: number, message: string) => ({ topic, errorCode, message })
    if (!BrokerState.isValidTopicName(topic)) return fail(ErrorCode.INVALID_TOPIC_EXCEPTION, "invalid topic name")
    if (state.topics.has(topic)) return fail(ErrorCode.TOPIC_ALREADY_EXISTS, `Topic '${topic}' already exists.`)
    if (partitions === 0 || partitions < -1) return fail(ErrorCode.INVALID_PARTITIONS, "partitions must be > 0")
    // One node holds one replica; a real single-node Kafka refuses more the same way.
    if (replicationFactor > 1) {
      return fail(ErrorCode.INVALID_REPLICATION_FACTOR, "the test broker has one node: replication factor 1")
    }
    if (!validateOnly) state.createTopic(topic, partitions === -1 ? state.defaultPartitions : partitions)
    return { topic, errorCode: ErrorCode.NONE, message: null }
  })
  return new Writer().array(results, (w, r) => w.string(r.topic).int16(r.errorCode).string(r.message))
}

export const produce: Handler = (body, { state }) => {
  body.string() // transactional id: transactions are not implemented
  const acks = body.int16()
  body.int32() // timeout: appends are immediate
  const topics = body.array((t) => ({
    topic: t.requiredString(),
    partitions: t.array((p) => {
      const partition = p.int32()
      return { partition, records: p.bytes() }
    }),
  }))
  const results = topics.map(({ topic, partitions }) => ({
    topic,
    partitions: partitions.map(({ partition, records }) => {
      const log = state.partition(topic, partition)
      const fail = (errorCode: number) => ({ partition, errorCode, baseOffset: -1n })
      if (log === undefined) return fail(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
      if (records === null) return fail(ErrorCode.CORRUPT_MESSAGE)
      const parsed = parseIncomingBatches(records)
      if ("error" in parsed) return fail(parsed.error)
      return { partition, errorCode: ErrorCode.NONE, baseOffset: log.append(parsed.batches) }
    }),
  }))
  // acks 0: the client expects no response at all (kafkajs' expectResponse).
  if (acks === 0) return null
  return new Writer()
    .array(results, (w, t) =>
      w.string(t.topic).array(t.partitions, (pw, p) =>
        pw.int32(p.partition).int16(p.errorCode).int64(p.baseOffset).int64(-1n), // log append time: none
      ),
    )
    .int32(0) // throttle time
}

interface FetchPartition {
  readonly partition: number
  readonly fetchOffset: bigint
  readonly maxBytes: number
}

export const fetch: Handler = async (body, { state, closed }) => {
  body.int32() // replica id
  const maxWaitMs = body.int32()
  const minBytes = body.int32()
  const maxBytes = body.int32()
  body.int8() // isolation level: no transactions, so every record is committed
  const topics = body.array((t) => ({
    topic: t.requiredString(),
    partitions: t.array(
      (p): FetchPartition => ({ partition: p.int32(), fetchOffset: p.int64(), maxBytes: p.int32() }),
    ),
  }))

  const read = () => {
    let total = 0
    const responses = topics.map(({ topic, partitions }) => ({
      topic,
      partitions: partitions.map(({ partition, fetchOffset, maxBytes: partitionMax }) => {
        const log = state.partition(topic, partition)
        if (log === undefined) {
          return { partition, errorCode: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, highWatermark: -1n, records: null }
        }
        const highWatermark = log.highWatermark
        if (fetchOffset < log.logStartOffset || fetchOffset > highWatermark) {
          return { partition, errorCode: ErrorCode.OFFSET_OUT_OF_RANGE, highWatermark, records: null }
        }
        // At least one batch in the response, even past the limits, so a consumer
        // always makes progress (Kafka's KIP-74 rule).
        const records = log.read(fetchOffset, Math.min(partitionMax, maxBytes - total), total === 0)
        total += records.length
        return { partition, errorCode: ErrorCode.NONE, highWatermark, records }
      }),
    }))
    return { responses, total }
  }

  let result = read()
  if (result.total < minBytes && maxWaitMs > 0 && !closed.aborted) {
    const logs = topics.flatMap(({ topic, partitions }) =>
      partitions.map(({ partition }) => state.partition(topic, partition)).filter((l): l is PartitionLog => !!l),
    )
    // Long poll: wake on an append to any requested partition, no polling loop.
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        for (const unsubscribe of unsubscribes) unsubscribe()
        closed.removeEventListener("abort", done)
        resolve()
      }
      const timer = setTimeout(done, maxWaitMs)
      const unsubscribes = logs.map((log) =>
        log.onAppend(() => {
          if (read().total >= minBytes) done()
        }),
      )
      closed.addEventListener("abort", done)
    })
    result = read()
  }

  return new Writer()
    .int32(0) // throttle time
    .array(result.responses, (w, t) =>
      w.string(t.topic).array(t.partitions, (pw, p) =>
        pw
          .int32(p.partition)
          .int16(p.errorCode)
          .int64(p.highWatermark)
          .int64(p.highWatermark) // last stable offset
          .array([], () => undefined) // aborted transactions
          .bytes(p.records ?? Buffer.alloc(0)),
      ),
    )
}

const EARLIEST = -2n
const LATEST = -1n

export const listOffsets: Handler = (body, { state }) => {
  body.int32() // replica id
  const topics = body.array((t) => ({
    topic: t.requiredString(),
    partitions: t.array((p) => ({ partition: p.int32(), timestamp: p.int64() })),
  }))
  return new Writer().array(topics, (w, { topic, partitions }) =>
    w.string(topic).array(partitions, (pw, { partition, timestamp }) => {
      const log = state.partition(topic, partition)
      if (log === undefined) {
        pw.int32(partition).int16(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION).int64(-1n).int64(-1n)
        return
      }
      const offset =
        timestamp === EARLIEST
          ? log.logStartOffset
          : timestamp === LATEST
            ? log.highWatermark
            : log.offsetForTimestamp(timestamp)
      pw.int32(partition).int16(ErrorCode.NONE).int64(-1n).int64(offset)
    }),
  )
}
