/**
 * Consumer groups as Kafka's group coordinator runs them, reduced to one node:
 * Empty → PreparingRebalance (joins held until every known member rejoined or the
 * rebalance timeout) → CompletingRebalance (the leader got everyone's metadata and
 * syncs the assignments; followers' SyncGroups are held) → Stable. A member that
 * joins, leaves, or misses its session timeout starts the next rebalance.
 * The assignment itself is computed by the client (kafkajs' leader), as in Kafka.
 */
import { randomUUID } from "node:crypto"
import { ErrorCode } from "./protocol.ts"

type GroupState = "Empty" | "PreparingRebalance" | "CompletingRebalance" | "Stable"

/** A protocol a member supports (for consumers: an assigner name and its metadata). */
export interface GroupProtocol {
  readonly name: string
  readonly metadata: Buffer
}

export interface JoinRequest {
  readonly memberId: string
  readonly clientId: string
  readonly sessionTimeoutMs: number
  readonly rebalanceTimeoutMs: number
  readonly protocolType: string
  readonly protocols: ReadonlyArray<GroupProtocol>
}

export interface JoinResult {
  readonly errorCode: number
  readonly generationId: number
  readonly protocol: string | null
  readonly leaderId: string
  readonly memberId: string
  /** Every member's metadata for the chosen protocol — for the leader only. */
  readonly members: ReadonlyArray<{ readonly memberId: string; readonly metadata: Buffer }>
}

export interface SyncResult {
  readonly errorCode: number
  readonly assignment: Buffer
}

interface Member {
  readonly id: string
  sessionTimeoutMs: number
  rebalanceTimeoutMs: number
  protocols: ReadonlyArray<GroupProtocol>
  assignment: Buffer
  pendingJoin: ((result: JoinResult) => void) | undefined
  pendingSync: ((result: SyncResult) => void) | undefined
  sessionTimer: NodeJS.Timeout | undefined
}

const EMPTY = Buffer.alloc(0)

const joinError = (errorCode: number, memberId: string): JoinResult => ({
  errorCode,
  generationId: -1,
  protocol: null,
  leaderId: "",
  memberId,
  members: [],
})

/** One consumer group's membership and generation. */
export class Group {
  readonly groupId: string
  private state: GroupState = "Empty"
  private generationId = 0
  private protocolType: string | null = null
  private protocol: string | null = null
  private leaderId: string | null = null
  private readonly members = new Map<string, Member>()
  private rebalanceTimer: NodeJS.Timeout | undefined

  constructor(groupId: string) {
    this.groupId = groupId
  }

  /** The members now, each with the size of its assignment in bytes (0: none yet). */
  get membership(): ReadonlyArray<{ readonly memberId: string; readonly assignmentBytes: number }> {
    return [...this.members.values()].map((m) => ({ memberId: m.id, assignmentBytes: m.assignment.length }))
  }

  join(request: JoinRequest): Promise<JoinResult> {
    const known = request.memberId === "" ? undefined : this.members.get(request.memberId)
    if (request.memberId !== "" && known === undefined) {
      return Promise.resolve(joinError(ErrorCode.UNKNOWN_MEMBER_ID, request.memberId))
    }
    if (request.sessionTimeoutMs <= 0 || request.rebalanceTimeoutMs <= 0) {
      return Promise.resolve(joinError(ErrorCode.INVALID_SESSION_TIMEOUT, request.memberId))
    }
    const others = [...this.members.values()].filter((m) => m !== known)
    const compatible =
      others.length === 0 ||
      (request.protocolType === this.protocolType &&
        request.protocols.some((p) => others.every((m) => m.protocols.some((q) => q.name === p.name))))
    if (!compatible) {
      return Promise.resolve(joinError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, request.memberId))
    }

    const member: Member = known ?? {
      id: `${request.clientId}-${randomUUID()}`,
      sessionTimeoutMs: 0,
      rebalanceTimeoutMs: 0,
      protocols: [],
      assignment: EMPTY,
      pendingJoin: undefined,
      pendingSync: undefined,
      sessionTimer: undefined,
    }
    member.sessionTimeoutMs = request.sessionTimeoutMs
    member.rebalanceTimeoutMs = request.rebalanceTimeoutMs
    member.protocols = request.protocols
    this.protocolType = request.protocolType
    this.members.set(member.id, member)
    // A held join is a live member: its session clock restarts with the answer.
    this.stopSession(member)
    // A client retrying a join it gave up on replaces the older one.
    member.pendingJoin?.(joinError(ErrorCode.REBALANCE_IN_PROGRESS, member.id))

    const result = new Promise<JoinResult>((resolve) => {
      member.pendingJoin = resolve
    })
    if (this.state !== "PreparingRebalance") this.prepareRebalance()
    this.completeJoinIfAllJoined()
    return result
  }

  sync(generationId: number, memberId: string, assignments: ReadonlyMap<string, Buffer>): Promise<SyncResult> {
    const member = this.members.get(memberId)
    const fail = (errorCode: number) => Promise.resolve({ errorCode, assignment: EMPTY })
    if (member === undefined) return fail(ErrorCode.UNKNOWN_MEMBER_ID)
    if (generationId !== this.generationId) return fail(ErrorCode.ILLEGAL_GENERATION)
    if (this.state === "PreparingRebalance") return fail(ErrorCode.REBALANCE_IN_PROGRESS)
    if (this.state === "Stable") {
      this.touch(member)
      return Promise.resolve({ errorCode: ErrorCode.NONE, assignment: member.assignment })
    }

    // CompletingRebalance: wait for the leader's assignments.
    this.stopSession(member)
    const result = new Promise<SyncResult>((resolve) => {
      member.pendingSync = resolve
    })
    if (member.id === this.leaderId) {
      for (const m of this.members.values()) m.assignment = assignments.get(m.id) ?? EMPTY
      this.state = "Stable"
      for (const m of this.members.values()) {
        const resolve = m.pendingSync
        m.pendingSync = undefined
        if (resolve !== undefined) {
          this.touch(m)
          resolve({ errorCode: ErrorCode.NONE, assignment: m.assignment })
        }
      }
    }
    return result
  }

  heartbeat(generationId: number, memberId: string): number {
    const member = this.members.get(memberId)
    if (member === undefined) return ErrorCode.UNKNOWN_MEMBER_ID
    if (generationId !== this.generationId) return ErrorCode.ILLEGAL_GENERATION
    this.touch(member)
    // Members learn of a rebalance from their heartbeat and rejoin.
    return this.state === "PreparingRebalance" ? ErrorCode.REBALANCE_IN_PROGRESS : ErrorCode.NONE
  }

  leave(memberId: string): number {
    const member = this.members.get(memberId)
    if (member === undefined) return ErrorCode.UNKNOWN_MEMBER_ID
    this.remove(member)
    return ErrorCode.NONE
  }

  /** Whether an OffsetCommit of this member and generation may be stored. */
  checkCommit(generationId: number, memberId: string): number {
    // A commit outside any generation (e.g. admin.setOffsets) is allowed.
    if (generationId < 0 && memberId === "") return ErrorCode.NONE
    const member = this.members.get(memberId)
    if (member === undefined) return ErrorCode.UNKNOWN_MEMBER_ID
    if (generationId !== this.generationId) return ErrorCode.ILLEGAL_GENERATION
    if (this.state === "PreparingRebalance") return ErrorCode.REBALANCE_IN_PROGRESS
    this.touch(member)
    return ErrorCode.NONE
  }

  /** Stops every timer; held requests are abandoned with their connections. */
  close(): void {
    clearTimeout(this.rebalanceTimer)
    for (const member of this.members.values()) this.stopSession(member)
    this.members.clear()
  }

  private prepareRebalance(): void {
    // Followers still waiting for this generation's assignment will not get one.
    for (const member of this.members.values()) {
      const resolve = member.pendingSync
      member.pendingSync = undefined
      if (resolve !== undefined) {
        this.touch(member)
        resolve({ errorCode: ErrorCode.REBALANCE_IN_PROGRESS, assignment: EMPTY })
      }
    }
    this.state = "PreparingRebalance"
    const timeout = Math.max(...[...this.members.values()].map((m) => m.rebalanceTimeoutMs))
    clearTimeout(this.rebalanceTimer)
    this.rebalanceTimer = setTimeout(() => this.completeJoin(), timeout)
    this.rebalanceTimer.unref()
  }

  private completeJoinIfAllJoined(): void {
    if (this.state !== "PreparingRebalance") return
    for (const member of this.members.values()) if (member.pendingJoin === undefined) return
    this.completeJoin()
  }

  /** Ends the join phase: members that did not rejoin are out, the rest get a new generation. */
  private completeJoin(): void {
    clearTimeout(this.rebalanceTimer)
    this.rebalanceTimer = undefined
    for (const member of [...this.members.values()]) {
      if (member.pendingJoin === undefined) {
        this.stopSession(member)
        this.members.delete(member.id)
      }
    }
    this.generationId++
    if (this.members.size === 0) {
      this.becomeEmpty()
      return
    }
    const members = [...this.members.values()]
    if (this.leaderId === null || !this.members.has(this.leaderId)) this.leaderId = members[0]!.id
    const leader = this.members.get(this.leaderId)!
    // The leader's first protocol that every member supports (join checked one exists).
    this.protocol =
      leader.protocols.find((p) => members.every((m) => m.protocols.some((q) => q.name === p.name)))?.name ??
      null
    this.state = "CompletingRebalance"
    const metadata = members.map((m) => ({
      memberId: m.id,
      metadata: m.protocols.find((p) => p.name === this.protocol)?.metadata ?? EMPTY,
    }))
    for (const member of members) {
      const resolve = member.pendingJoin!
      member.pendingJoin = undefined
      member.assignment = EMPTY
      this.touch(member)
      resolve({
        errorCode: ErrorCode.NONE,
        generationId: this.generationId,
        protocol: this.protocol,
        leaderId: this.leaderId,
        memberId: member.id,
        members: member.id === this.leaderId ? metadata : [],
      })
    }
  }

  private remove(member: Member): void {
    this.stopSession(member)
    this.members.delete(member.id)
    member.pendingJoin?.(joinError(ErrorCode.UNKNOWN_MEMBER_ID, member.id))
    member.pendingSync?.({ errorCode: ErrorCode.UNKNOWN_MEMBER_ID, assignment: EMPTY })
    if (this.members.size === 0) {
      clearTimeout(this.rebalanceTimer)
      this.generationId++
      this.becomeEmpty()
    } else if (this.state === "PreparingRebalance") {
      this.completeJoinIfAllJoined()
    } else {
      this.prepareRebalance()
    }
  }

  private becomeEmpty(): void {
    this.state = "Empty"
    this.leaderId = null
    this.protocol = null
    this.protocolType = null
  }

  /** Restarts the member's session clock: it is alive now. */
  private touch(member: Member): void {
    this.stopSession(member)
    member.sessionTimer = setTimeout(() => {
      member.sessionTimer = undefined
      if (this.members.get(member.id) === member) this.remove(member)
    }, member.sessionTimeoutMs)
    member.sessionTimer.unref()
  }

  private stopSession(member: Member): void {
    clearTimeout(member.sessionTimer)
    member.sessionTimer = undefined
  }
}
