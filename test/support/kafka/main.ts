/**
 * `npm run kafka:dev -- --port 9092`: runs the Kafka test broker standalone on
 * 127.0.0.1 until SIGINT/SIGTERM, for trying the project's Kafka code by hand.
 */
import { parseArgs } from "node:util"
import { KafkaTestBroker } from "./KafkaTestBroker.ts"

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "9092" },
    partitions: { type: "string", default: "1" },
  },
})
const port = Number(values.port)
const defaultPartitions = Number(values.partitions)
if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: not a port: ${values.port}`)
if (!Number.isInteger(defaultPartitions) || defaultPartitions < 1) {
  throw new Error(`--partitions: not a positive integer: ${values.partitions}`)
}

const broker = await KafkaTestBroker.start({ port, host: "127.0.0.1", defaultPartitions })
console.log(
  `taskfiber Kafka TEST broker (in-memory, not Kafka) listening on ${broker.brokers[0]}; ` +
    `auto-created topics get ${defaultPartitions} partition(s); Ctrl-C stops it`,
)

const shutdown = () => {
  void broker.stop().then(() => process.exit(0))
}
process.once("SIGINT", shutdown)
process.once("SIGTERM", shutdown)
