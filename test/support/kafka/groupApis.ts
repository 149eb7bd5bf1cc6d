/**
 * FindCoordinator v1, JoinGroup v2, SyncGroup v1, Heartbeat v1, LeaveGroup v1,
 * OffsetCommit v2, OffsetFetch v1: consumer groups (groupCoordinator.ts) and their
 * committed offsets.
 */
import { partitionKey, type Handler } from "./brokerState.ts"
import { ErrorCode, NODE_ID } from "./protocol.ts"
import { Writer } from "./wire.ts"

export const findCoordinator: Handler = (body, { state }) => {
  body.requiredString() // coordinator key (group id): this node coordinates every group
  body.int8() // coordinator type
  return new Writer()
    .int32(0) // throttle time
    .int16(ErrorCode.NONE)
    .string(null) // error message
    .int32(NODE_ID)
    .string(state.host)
    .int32(state.port)
}

export const joinGroup: Handler = async (body, { state, clientId }) => {
  const groupId = body.requiredString()
  const sessionTimeoutMs = body.int32()
  const rebalanceTimeoutMs = body.int32()
  const memberId = body.requiredString()
  const protocolType = body.requiredString()
  const protocols = body.array((r) => ({ name: r.requiredString(), metadata: Buffer.from(r.bytes() ?? []) }))
  const result = await state
    .group(groupId)
    .join({ memberId, clientId, sessionTimeoutMs, rebalanceTimeoutMs, protocolType, protocols })
  return new Writer()
    .int32(0) // throttle time
    .int16(result.errorCode)
    .int32(result.generationId)
    .string(result.protocol)
    .string(result.leaderId)
    .string(result.memberId)
    .array(result.members, (w, m) => w.string(m.memberId).bytes(m.metadata))
}

export const syncGroup: Handler = async (body, { state }) => {
  const groupId = body.requiredString()
  const generationId = body.int32()
  const memberId = body.requiredString()
  const assignments = new Map(
    body.array((r) => [r.requiredString(), Buffer.from(r.bytes() ?? [])] as const),
  )
  const result = await state.group(groupId).sync(generationId, memberId, assignments)
  return new Writer().int32(0).int16(result.errorCode).bytes(result.assignment)
}

export const heartbeat: Handler = (body, { state }) => {
  const groupId = body.requiredString()
  const generationId = body.int32()
  const memberId = body.requiredString()
  return new Writer().int32(0).int16(state.group(groupId).heartbeat(generationId, memberId))
}

export const leaveGroup: Handler = (body, { state }) => {
  const groupId = body.requiredString()
  const memberId = body.requiredString()
  return new Writer().int32(0).int16(state.group(groupId).leave(memberId))
}

export const offsetCommit: Handler = (body, { state }) => {
  const groupId = body.requiredString()
  const generationId = body.int32()
  const memberId = body.requiredString()
  body.int64() // retention time: offsets are kept for the broker's life
  const topics = body.array((t) => ({
    topic: t.requiredString(),
    partitions: t.array((p) => ({ partition: p.int32(), offset: p.int64(), metadata: p.string() })),
  }))
  // A commit from a member that is out of the current generation must not land:
  // that is what makes a rebalance hand partitions over without double commits.
  let groupError = state.group(groupId).checkCommit(generationId, memberId)
  // A commit refused on purpose (fault injection): as when the member's session
  // ended between its write and its commit.
  const refuse = state.refusedCommits.get(groupId)
  if (refuse !== undefined && refuse.left > 0 && groupError === ErrorCode.NONE) {
    if (--refuse.left === 0) refuse.done()
    groupError = ErrorCode.UNKNOWN_MEMBER_ID
  }
  const committed = state.committedOffsets(groupId)
  return new Writer().array(topics, (w, { topic, partitions }) =>
    w.string(topic).array(partitions, (pw, { partition, offset, metadata }) => {
      let errorCode: number = groupError
      if (errorCode === ErrorCode.NONE && state.partition(topic, partition) === undefined) {
        errorCode = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
      }
      if (errorCode === ErrorCode.NONE) committed.set(partitionKey(topic, partition), { offset, metadata })
      pw.int32(partition).int16(errorCode)
    }),
  )
}

export const offsetFetch: Handler = (body, { state }) => {
  const groupId = body.requiredString()
  const topics = body.array((t) => ({ topic: t.requiredString(), partitions: t.array((p) => p.int32()) }))
  const committed = state.offsets.get(groupId)
  return new Writer().array(topics, (w, { topic, partitions }) =>
    w.string(topic).array(partitions, (pw, partition) => {
      const entry = committed?.get(partitionKey(topic, partition))
      // -1: nothing committed, the consumer falls back to ListOffsets.
      pw.int32(partition)
        .int64(entry?.offset ?? -1n)
        .string(entry?.metadata ?? "")
        .int16(ErrorCode.NONE)
    }),
  )
}
