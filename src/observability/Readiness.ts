/**
 * Whether this instance should be sent work (`GET /health/ready`): its schema is
 * migrated (the layer is built over the migrated database), its supervisor is up
 * and not shutting down, and, with Kafka configured, its consumer has joined its
 * group. Liveness is the process answering at all.
 *
 * The supervisor's part is told by {@link supervisorUp}, a layer built after the
 * supervisor (so it closes first): from the first signal on, the instance reads
 * "shutting down" while its running jobs finish.
 */
import { Context, Effect, Layer } from "effect"
import { RuntimeEvents } from "./RuntimeEvents.ts"

/** The answer: ready, or the reasons why not. */
export interface ReadinessReport {
  readonly ready: boolean
  readonly supervisor: "starting" | "running" | "shutting down"
  /** Absent without Kafka. */
  readonly kafka?: "joined" | "not joined"
  readonly reasons: ReadonlyArray<string>
}

/** The readiness of this instance. */
export class Readiness extends Context.Service<Readiness, {
  readonly check: Effect.Effect<ReadinessReport>
  /** The supervisor's state, told by {@link supervisorUp}. */
  readonly setSupervisor: (state: ReadinessReport["supervisor"]) => Effect.Effect<void>
}>()("taskfiber/Readiness") {}

/** Readiness, with Kafka's membership followed when `kafka` (from before the consumer starts). */
export const layer = (options: { readonly kafka: boolean }): Layer.Layer<Readiness, never, RuntimeEvents> =>
  Layer.effect(Readiness, Effect.gen(function*() {
    let supervisor: ReadinessReport["supervisor"] = "starting"
    let joined = false
    let lastKafkaProblem = "the consumer has not joined its group yet"
    if (options.kafka) {
      const events = yield* RuntimeEvents
      yield* events.subscribe(["IngressJoined", "IngressDisconnected"], (event) => {
        if (event._tag === "IngressJoined") joined = true
        else if (event._tag === "IngressDisconnected") {
          joined = false
          lastKafkaProblem = `the consumer left its group: ${event.reason}`
        }
      })
    }
    return Readiness.of({
      check: Effect.sync(() => {
        const reasons: Array<string> = []
        if (supervisor !== "running") reasons.push(`the supervisor is ${supervisor}`)
        if (options.kafka && !joined) reasons.push(`kafka: ${lastKafkaProblem}`)
        return {
          ready: reasons.length === 0,
          supervisor,
          ...(options.kafka ? { kafka: joined ? "joined" as const : "not joined" as const } : {}),
          reasons
        }
      }),
      setSupervisor: (state) => Effect.sync(() => {
        supervisor = state
      })
    })
  }))

/** Marks the supervisor running while the layer lives, "shutting down" from its close on. */
export const supervisorUp: Layer.Layer<never, never, Readiness> = Layer.effectDiscard(
  Effect.flatMap(Readiness, (r) => Effect.acquireRelease(r.setSupervisor("running"), () => r.setSupervisor("shutting down")))
)
