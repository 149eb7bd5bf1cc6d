/**
 * `taskfiber start` with KAFKA_BROKERS, as real processes against the Kafka test
 * broker: a message produced with kafkajs becomes a task that runs, its status
 * events come back on the status topic, SIGTERM exits 0; Kafka out of reach is one
 * line and exit 1. Every wait is on a line of output or a consumed message.
 */
import { Kafka, logLevel } from "kafkajs"
import { describe, expect, it } from "vitest"
import { newTaskId } from "../../src/store/TaskId.ts"
import { childDatabase, processes } from "../support/Cli.ts"
import { KafkaTestBroker } from "../support/kafka/KafkaTestBroker.ts"

const { run, spawnCli, killAll } = processes()
let broker: KafkaTestBroker | undefined
const env = childDatabase(async () => {
  await killAll()
  await broker?.close()
})

describe("taskfiber start with Kafka", () => {
  it("a produced message becomes a task that runs; its status events come back; SIGTERM exits 0", async () => {
    broker = await KafkaTestBroker.start()
    broker.createTopic("tasks", 2)
    broker.createTopic("task-status", 1)
    const kafkaEnv = { ...env, KAFKA_BROKERS: broker.brokers.join(","), KAFKA_GROUP_ID: "cli-test", KAFKA_MEMBER_TIMEOUT: "6000" }
    const start = spawnCli(["start"], kafkaEnv)
    await start.waitForLog("kafka ingress consuming", {}, 30_000)

    const kafka = new Kafka({ clientId: "cli-test-client", brokers: broker.brokers, logLevel: logLevel.NOTHING })
    const statuses: Array<string> = []
    let seen: () => void = () => {}
    const succeeded = new Promise<void>((resolve) => (seen = resolve))
    const id = newTaskId()
    const consumer = kafka.consumer({ groupId: "status-reader", sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
    await consumer.connect()
    await consumer.subscribe({ topic: "task-status", fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (String(message.key) !== id) return
        statuses.push(String(message.headers?.status))
        if (String(message.headers?.status) === "succeeded") seen()
      }
    })
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({ topic: "tasks", acks: -1, messages: [{ headers: { "task-id": id, "task-type": "echo" }, value: JSON.stringify({ via: "kafka" }) }] })
    await producer.disconnect()

    await start.waitForLog("task settled", { taskId: id, outcome: "succeeded" }, 30_000)
    await Promise.race([succeeded, new Promise((_, reject) => setTimeout(() => reject(new Error(`no succeeded event: ${statuses}`)), 30_000))])
    expect(statuses).toEqual(["queued", "running", "succeeded"])
    await consumer.disconnect()

    start.child.kill("SIGTERM")
    expect(await start.exitWithin(20_000), start.output()).toBe(0)
  }, 120_000)

  it("Kafka out of reach: one line naming KAFKA_BROKERS, exit 1", async () => {
    const r = await run(["start"], { ...env, KAFKA_BROKERS: "127.0.0.1:1" })
    expect(r.code, r.proc.output()).toBe(1)
    expect(r.stderr.split("\n").filter((l) => l.startsWith("taskfiber: cannot"))).toEqual([
      expect.stringMatching(/^taskfiber: cannot use Kafka at 127\.0\.0\.1:1 \(KAFKA_BROKERS\): .*ECONNREFUSED/)
    ])
  }, 90_000)
})
