/**
 * The Kafka test broker of bench/ingest.ts, in a process of its own (as a Kafka
 * is): `KafkaTestBroker.start()` on a free loopback port, the topics named in
 * argv (`name:partitions`) created, then `{ port }` sent over IPC. Stops when the
 * parent disconnects, reporting the CPU it used (`{ cpuMs }`) first.
 */
import { KafkaTestBroker } from "../test/support/kafka/KafkaTestBroker.ts"

const broker = await KafkaTestBroker.start()
for (const spec of process.argv.slice(2)) {
  const [name, partitions] = spec.split(":")
  broker.createTopic(name!, Number(partitions))
}
process.send!({ port: broker.port })
process.on("message", (message) => {
  if ((message as { readonly kind?: string }).kind !== "cpu") return
  const cpu = process.cpuUsage()
  process.send!({ cpuMs: (cpu.user + cpu.system) / 1000 })
})
process.on("disconnect", () => {
  void broker.stop().then(() => process.exit(0))
})
