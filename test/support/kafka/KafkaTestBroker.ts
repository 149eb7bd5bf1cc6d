/**
 * A single-node Kafka broker for tests — NOT Kafka. It speaks the subset of the Kafka
 * wire protocol kafkajs 2.2.4 uses (one advertised version per API, see
 * protocol.ts), keeps logs in memory, and runs consumer groups with real
 * rebalances, so the project's Kafka code is tested against the real client.
 */
import { createServer, type Server, type Socket } from "node:net"
import { Effect, type Scope } from "effect"
import { BrokerState, type Handler } from "./brokerState.ts"
import { createTopics, fetch, listOffsets, metadata, produce } from "./dataApis.ts"
import {
  findCoordinator,
  heartbeat,
  joinGroup,
  leaveGroup,
  offsetCommit,
  offsetFetch,
  syncGroup,
} from "./groupApis.ts"
import { ApiKey, advertisedVersions, ErrorCode } from "./protocol.ts"
import { Reader, Writer } from "./wire.ts"

/** Options of `KafkaTestBroker.start`. */
export interface KafkaTestBrokerOptions {
  /** 0 (the default) picks a free port; `restart()` keeps whichever port it got. */
  readonly port?: number
  /** Loopback only: "127.0.0.1" (default), "::1" or "localhost". */
  readonly host?: string
  /**
   * Create a topic the first time a client's Metadata request names it and allows
   * auto-creation (kafkajs' producers and consumers do by default), like Kafka's
   * `auto.create.topics.enable`. Default true.
   */
  readonly autoCreateTopics?: boolean
  /** Partitions of an auto-created topic, or of CreateTopics with -1. Default 1. */
  readonly defaultPartitions?: number
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"])

const apiVersions: Handler = (_body, { apiVersion }) => {
  const writer = new Writer()
    .int16(ErrorCode.NONE)
    .array(advertisedVersions, (w, [apiKey, version]) =>
      w.int16(apiKey).int16(apiKey === ApiKey.ApiVersions ? 0 : version).int16(version),
    )
  return apiVersion >= 1 ? writer.int32(0) : writer // throttle time from v1
}

const handlers = new Map<number, Handler>([
  [ApiKey.ApiVersions, apiVersions],
  [ApiKey.Metadata, metadata],
  [ApiKey.CreateTopics, createTopics],
  [ApiKey.Produce, produce],
  [ApiKey.Fetch, fetch],
  [ApiKey.ListOffsets, listOffsets],
  [ApiKey.FindCoordinator, findCoordinator],
  [ApiKey.JoinGroup, joinGroup],
  [ApiKey.SyncGroup, syncGroup],
  [ApiKey.Heartbeat, heartbeat],
  [ApiKey.LeaveGroup, leaveGroup],
  [ApiKey.OffsetCommit, offsetCommit],
  [ApiKey.OffsetFetch, offsetFetch],
])
const versions = new Map(advertisedVersions)

const log = (message: string) => console.error(`[kafka-test-broker] ${message}`)

/**
 * One client connection: frames requests, runs them concurrently (a held Fetch
 * must not block the Produce that would wake it), and writes the responses in
 * request order, as Kafka does and clients rely on.
 */
class Connection {
  private readonly socket: Socket
  private readonly broker: KafkaTestBroker
  private readonly abort = new AbortController()
  private pending: Buffer = Buffer.alloc(0)
  private tail: Promise<void> = Promise.resolve()
  clientId: string | null = null

  constructor(socket: Socket, broker: KafkaTestBroker) {
    this.socket = socket
    this.broker = broker
    socket.on("data", (chunk) => this.onData(chunk))
    socket.on("error", () => socket.destroy())
    socket.on("close", () => this.abort.abort())
  }

  destroy(): void {
    this.socket.destroy()
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    while (this.pending.length >= 4) {
      const size = this.pending.readInt32BE(0)
      if (this.pending.length < 4 + size) return
      const frame = this.pending.subarray(4, 4 + size)
      this.pending = this.pending.subarray(4 + size)
      this.onRequest(frame)
      if (this.socket.destroyed) return
    }
  }

  private onRequest(frame: Buffer): void {
    const reader = new Reader(frame)
    let apiKey: number, apiVersion: number, correlationId: number, clientId: string
    try {
      apiKey = reader.int16()
      apiVersion = reader.int16()
      correlationId = reader.int32()
      clientId = reader.string() ?? ""
    } catch (error) {
      // Thrown from a socket event it would take the whole broker (the test process) down.
      log(`unreadable request header (${String(error)}): closing the connection`)
      this.socket.destroy()
      return
    }
    this.clientId = clientId
    // A frozen client is a dead process as far as the broker can tell.
    if (this.broker.isFrozen(clientId)) return

    const handler = handlers.get(apiKey)
    let response: Promise<Writer | null>
    if (apiKey === ApiKey.ApiVersions && apiVersion > 2) {
      // Kafka answers a too-new ApiVersions in v0 layout so the client can step down.
      response = Promise.resolve(new Writer().int16(ErrorCode.UNSUPPORTED_VERSION).int32(0))
    } else if (handler === undefined || (apiKey !== ApiKey.ApiVersions && versions.get(apiKey) !== apiVersion)) {
      log(`unsupported API key ${apiKey} v${apiVersion} from client "${clientId}": closing its connection`)
      this.socket.destroy()
      return
    } else {
      const context = { state: this.broker.state, clientId, apiVersion, closed: this.abort.signal }
      response = Promise.resolve().then(() => handler(reader, context))
    }

    this.tail = this.tail.then(() =>
      response.then(
        (body) => {
          if (body === null || this.socket.destroyed) return
          const payload = body.toBuffer()
          const header = Buffer.allocUnsafe(8)
          header.writeInt32BE(payload.length + 4, 0)
          header.writeInt32BE(correlationId, 4)
          this.socket.write(Buffer.concat([header, payload]))
        },
        (error: unknown) => {
          log(`API key ${apiKey} v${apiVersion} from "${clientId}" failed: ${String(error)}; closing the connection`)
          this.socket.destroy()
        },
      ),
    )
  }
}

/** A running test broker; see the module comment. */
export class KafkaTestBroker {
  /** @internal shared with the request handlers */
  readonly state: BrokerState
  private server: Server | undefined
  private readonly connections = new Set<Connection>()
  private readonly frozen = new Set<string>()

  private constructor(state: BrokerState) {
    this.state = state
  }

  /** Starts a broker listening on loopback. */
  static async start(options: KafkaTestBrokerOptions = {}): Promise<KafkaTestBroker> {
    const host = options.host ?? "127.0.0.1"
    if (!LOOPBACK.has(host)) throw new Error(`KafkaTestBroker listens on loopback only, not ${host}`)
    const broker = new KafkaTestBroker(
      new BrokerState({
        host: host === "localhost" ? "127.0.0.1" : host,
        autoCreateTopics: options.autoCreateTopics ?? true,
        defaultPartitions: options.defaultPartitions ?? 1,
      }),
    )
    await broker.listen(options.port ?? 0)
    return broker
  }

  /** A broker that stops when the scope closes. */
  static scoped(options: KafkaTestBrokerOptions = {}): Effect.Effect<KafkaTestBroker, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.promise(() => KafkaTestBroker.start(options)),
      (broker) => Effect.promise(() => broker.stop()),
    )
  }

  get port(): number {
    return this.state.port
  }

  /** The `brokers` option for kafkajs. */
  get brokers(): string[] {
    const host = this.state.host.includes(":") ? `[${this.state.host}]` : this.state.host
    return [`${host}:${this.state.port}`]
  }

  /** Creates a topic (no-op when it exists). */
  createTopic(name: string, partitions: number): void {
    if (!BrokerState.isValidTopicName(name) || partitions < 1) {
      throw new Error(`invalid topic ${name} with ${partitions} partitions`)
    }
    this.state.createTopic(name, partitions)
  }

  /** Closes every connection and stops listening; logs are kept in memory until dropped. */
  async stop(): Promise<void> {
    await this.closeServer()
    this.state.forgetGroups()
  }

  /** Same as `stop`. */
  close(): Promise<void> {
    return this.stop()
  }

  /**
   * Closes everything and listens again on the same port, like a broker restart:
   * logs and committed offsets stay, group memberships are gone (members rejoin).
   */
  async restart(): Promise<void> {
    await this.stop()
    await this.listen(this.state.port)
  }

  /** Fault injection: destroys every client socket now (clients reconnect). */
  dropConnections(): void {
    for (const connection of this.connections) connection.destroy()
  }

  /**
   * Fault injection: the next `count` OffsetCommits of `groupId` are refused with
   * UNKNOWN_MEMBER_ID, as when a consumer's session ended between writing a batch
   * and committing its offset; nothing of them is stored. Resolves once they were.
   */
  refuseOffsetCommits(groupId: string, count = 1): Promise<void> {
    return new Promise((resolve) => this.state.refusedCommits.set(groupId, { left: count, done: resolve }))
  }

  /**
   * Fault injection: the client with this `clientId` looks dead — its requests are
   * read and never answered, so its heartbeats stop and its session runs out.
   * The returned function thaws it: its sockets are destroyed (so its stuck
   * requests fail now instead of at their timeout) and it is served again.
   */
  freezeClient(clientId: string): () => void {
    this.frozen.add(clientId)
    return () => {
      this.frozen.delete(clientId)
      for (const connection of this.connections) if (connection.clientId === clientId) connection.destroy()
    }
  }

  /** @internal */
  isFrozen(clientId: string): boolean {
    return this.frozen.size > 0 && this.frozen.has(clientId)
  }

  private listen(port: number): Promise<void> {
    const server = createServer((socket) => {
      socket.setNoDelay(true)
      const connection = new Connection(socket, this)
      this.connections.add(connection)
      socket.on("close", () => this.connections.delete(connection))
    })
    this.server = server
    return new Promise((resolve, reject) => {
      server.once("error", reject)
      server.listen(port, this.state.host, () => {
        server.off("error", reject)
        const address = server.address()
        if (address !== null && typeof address === "object") this.state.port = address.port
        resolve()
      })
    })
  }

  private closeServer(): Promise<void> {
    const server = this.server
    this.server = undefined
    this.dropConnections()
    if (server === undefined) return Promise.resolve()
    return new Promise((resolve) => server.close(() => resolve()))
  }
}
