/**
 * The protocol constants the test broker uses: API keys, the one version it
 * advertises for each API, and error codes (kafka.apache.org/protocol#protocol_error_codes).
 */

/** API keys of the requests the broker answers. */
export const ApiKey = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  JoinGroup: 11,
  Heartbeat: 12,
  LeaveGroup: 13,
  SyncGroup: 14,
  ApiVersions: 18,
  CreateTopics: 19,
} as const

/**
 * The single version advertised (min = max) per API, so kafkajs uses exactly it.
 * Chosen as the lowest version with what kafkajs needs: record batches v2 with
 * headers (Produce 3, Fetch 4), the client's auto-create flag (Metadata 4), a
 * rebalance timeout (JoinGroup 1+; 2 stays below v4's MEMBER_ID_REQUIRED round trip),
 * FindCoordinator 1 (kafkajs sends a coordinator key and type).
 * ApiVersions answers whichever of v0–v2 the client sent.
 */
export const advertisedVersions: ReadonlyArray<readonly [apiKey: number, version: number]> = [
  [ApiKey.Produce, 3],
  [ApiKey.Fetch, 4],
  [ApiKey.ListOffsets, 1],
  [ApiKey.Metadata, 4],
  [ApiKey.OffsetCommit, 2],
  [ApiKey.OffsetFetch, 1],
  [ApiKey.FindCoordinator, 1],
  [ApiKey.JoinGroup, 2],
  [ApiKey.Heartbeat, 1],
  [ApiKey.LeaveGroup, 1],
  [ApiKey.SyncGroup, 1],
  [ApiKey.ApiVersions, 2],
  [ApiKey.CreateTopics, 1],
]

/** Kafka error codes the broker answers with. */
export const ErrorCode = {
  NONE: 0,
  OFFSET_OUT_OF_RANGE: 1,
  CORRUPT_MESSAGE: 2,
  UNKNOWN_TOPIC_OR_PARTITION: 3,
  INVALID_TOPIC_EXCEPTION: 17,
  ILLEGAL_GENERATION: 22,
  INCONSISTENT_GROUP_PROTOCOL: 23,
  UNKNOWN_MEMBER_ID: 25,
  INVALID_SESSION_TIMEOUT: 26,
  REBALANCE_IN_PROGRESS: 27,
  UNSUPPORTED_VERSION: 35,
  TOPIC_ALREADY_EXISTS: 36,
  INVALID_PARTITIONS: 37,
  INVALID_REPLICATION_FACTOR: 38,
  UNSUPPORTED_FOR_MESSAGE_FORMAT: 43,
} as const

/** The broker's node id: it is the only node, leader of every partition and coordinator. */
export const NODE_ID = 0
