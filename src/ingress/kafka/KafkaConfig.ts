/**
 * Kafka settings, from the environment. With `KAFKA_BROKERS` unset (or empty)
 * there is no Kafka: no ingress, no status relay, the runtime as without it.
 */
import { Config, Option, Redacted, Schema } from "effect"

/** SASL, passed through to kafkajs. */
export interface KafkaSasl {
  readonly mechanism: "plain" | "scram-sha-256" | "scram-sha-512"
  readonly username: string
  readonly password: Redacted.Redacted<string>
}

/** The Kafka settings (see the README's configuration table). */
export interface KafkaConfig {
  /** `KAFKA_BROKERS`: `host:port` list. */
  readonly brokers: ReadonlyArray<string>
  /** `KAFKA_CLIENT_ID`, default `taskfiber`. */
  readonly clientId: string
  /** `KAFKA_TOPICS`: the topics tasks arrive on, default `tasks`. */
  readonly topics: ReadonlyArray<string>
  /** `KAFKA_GROUP_ID`, default `taskfiber`. */
  readonly groupId: string
  /** `KAFKA_STATUS_TOPIC`: where status events go, default `task-status`; none = no relay. */
  readonly statusTopic: Option.Option<string>
  /** `KAFKA_PARTITIONS_CONCURRENTLY`: partitions processed at once, default 3. */
  readonly partitionsConcurrently: number
  /** `KAFKA_MAX_MESSAGE_BYTES`: the largest value taken as a payload, default 1 MiB; larger ones are dead-lettered. */
  readonly maxMessageBytes: number
  /** `KAFKA_MEMBER_TIMEOUT`: ms a consumer may go without a heartbeat before the group gives its partitions to the others (Kafka's session timeout), default 30000. */
  readonly memberTimeoutMs: number
  /** `KAFKA_SSL=true`: TLS to the brokers. */
  readonly ssl: boolean
  /** `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`. */
  readonly sasl: Option.Option<KafkaSasl>
}

const list = (name: string, fallback: string) =>
  Config.String(name).pipe(
    Config.withDefault(fallback),
    Config.map((text) => text.split(",").map((s) => s.trim()).filter((s) => s !== ""))
  )

const hostPort = /^[^\s:,]+:\d{1,5}$/

const brokers = Config.schema(
  Schema.String.check(Schema.makeFilter((text: string) =>
    text.split(",").map((s) => s.trim()).filter((s) => s !== "").every((b) => hostPort.test(b)) ||
    "expected host:port entries separated by commas"
  )),
  "KAFKA_BROKERS"
).pipe(
  Config.withDefault(""),
  Config.map((text) => text.split(",").map((s) => s.trim()).filter((s) => s !== ""))
)

const intBetween = (name: string, minimum: number, maximum: number, fallback: number) =>
  Config.schema(Schema.Int.check(Schema.isBetween({ minimum, maximum })), name).pipe(Config.withDefault(fallback))

const sasl: Config.Config<Option.Option<KafkaSasl>> = Config.all({
  mechanism: Config.schema(Schema.Literals(["plain", "scram-sha-256", "scram-sha-512"]), "KAFKA_SASL_MECHANISM").pipe(Config.option),
  username: Config.String("KAFKA_SASL_USERNAME").pipe(Config.withDefault("")),
  password: Config.Redacted("KAFKA_SASL_PASSWORD").pipe(Config.withDefault(Redacted.make("")))
}).pipe(Config.map(({ mechanism, password, username }) =>
  Option.map(mechanism, (m) => ({ mechanism: m, username, password }))
))

/** The settings; `None` when `KAFKA_BROKERS` is unset or empty. */
export const config: Config.Config<Option.Option<KafkaConfig>> = Config.all({
  brokers,
  clientId: Config.String("KAFKA_CLIENT_ID").pipe(Config.withDefault("taskfiber")),
  topics: list("KAFKA_TOPICS", "tasks"),
  groupId: Config.String("KAFKA_GROUP_ID").pipe(Config.withDefault("taskfiber")),
  statusTopic: Config.String("KAFKA_STATUS_TOPIC").pipe(
    Config.withDefault("task-status"),
    Config.map((t) => (t.trim() === "" ? Option.none() : Option.some(t.trim())))
  ),
  partitionsConcurrently: intBetween("KAFKA_PARTITIONS_CONCURRENTLY", 1, 1000, 3),
  maxMessageBytes: intBetween("KAFKA_MAX_MESSAGE_BYTES", 1, 100 * 1024 * 1024, 1024 * 1024),
  memberTimeoutMs: intBetween("KAFKA_MEMBER_TIMEOUT", 6000, 300_000, 30_000),
  ssl: Config.Boolean("KAFKA_SSL").pipe(Config.withDefault(false)),
  sasl
}).pipe(Config.map((c) => (c.brokers.length === 0 ? Option.none() : Option.some(c))))
