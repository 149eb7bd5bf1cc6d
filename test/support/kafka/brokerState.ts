/**
 * What the broker knows across connections (and, except for groups, across
 * restarts): topics with their partition logs, committed offsets, consumer groups.
 */
import { Group } from "./groupCoordinator.ts"
import { PartitionLog } from "./partitionLog.ts"
import type { Reader, Writer } from "./wire.ts"

/** A committed offset and the metadata string the client stored with it. */
export interface CommittedOffset {
  readonly offset: bigint
  readonly metadata: string | null
}

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/

export class BrokerState {
  readonly topics = new Map<string, PartitionLog[]>()
  /** group id → "topic\u0000partition" → committed offset. */
  readonly offsets = new Map<string, Map<string, CommittedOffset>>()
  readonly groups = new Map<string, Group>()
  /** Fault injection: group id → how many of its next OffsetCommits to refuse, and who waits for them. */
  readonly refusedCommits = new Map<string, { left: number; readonly done: () => void }>()
  readonly autoCreateTopics: boolean
  readonly defaultPartitions: number
  readonly host: string
  port = 0

  constructor(options: { autoCreateTopics: boolean; defaultPartitions: number; host: string }) {
    this.autoCreateTopics = options.autoCreateTopics
    this.defaultPartitions = options.defaultPartitions
    this.host = options.host
  }

  static isValidTopicName(name: string): boolean {
    return TOPIC_NAME.test(name) && name !== "." && name !== ".."
  }

  /** Creates the topic; false when it exists already. */
  createTopic(name: string, partitions: number): boolean {
    if (this.topics.has(name)) return false
    this.topics.set(
      name,
      Array.from({ length: partitions }, () => new PartitionLog()),
    )
    return true
  }

  partition(topic: string, partition: number): PartitionLog | undefined {
    return this.topics.get(topic)?.[partition]
  }

  group(groupId: string): Group {
    let group = this.groups.get(groupId)
    if (group === undefined) {
      group = new Group(groupId)
      this.groups.set(groupId, group)
    }
    return group
  }

  committedOffsets(groupId: string): Map<string, CommittedOffset> {
    let offsets = this.offsets.get(groupId)
    if (offsets === undefined) {
      offsets = new Map()
      this.offsets.set(groupId, offsets)
    }
    return offsets
  }

  /** Memberships end with a restart, as on a real broker; logs and offsets stay. */
  forgetGroups(): void {
    for (const group of this.groups.values()) group.close()
    this.groups.clear()
  }
}

/** Key of a topic-partition in maps. */
export const partitionKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`

/** What a request handler gets besides its body. */
export interface RequestContext {
  readonly state: BrokerState
  readonly clientId: string
  readonly apiVersion: number
  /** Aborted when the connection closes: held requests stop waiting. */
  readonly closed: AbortSignal
}

/** Decodes a request body and encodes the response body; null = send no response (acks 0). */
export type Handler = (body: Reader, context: RequestContext) => Promise<Writer | null> | Writer | null
