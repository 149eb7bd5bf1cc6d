/**
 * Wake-ups by PostgreSQL's LISTEN/NOTIFY: the schema's triggers send
 * `NOTIFY taskfiber_tasks, '<queue>'` when tasks become queued (an enqueue, a
 * release, a replay; a retry's later `run_at` is the dispatcher's own timer).
 *
 * The listener holds one connection of its own. When it fails for any reason (the
 * connection lost, a defect in the stream or in a callback), the subscription is
 * made again (100 ms doubling to 10 s between failed attempts, back to 100 ms once
 * one worked) and each new one reports
 * "any queue" at once: notifications sent while nobody listened are gone. While
 * the database is unreachable that is one Warn line when it goes and one Info line
 * when LISTEN works again (Outages), not a line per attempt.
 */
import { Cause, Deferred, Duration, Effect, Layer, Queue, Schedule } from "effect"
import { PgClient } from "@effect/sql-pg"
import * as Outages from "../observability/Outages.ts"
import { Wakeups } from "./Wakeups.ts"

/** The channel the schema's triggers notify; the payload is the queue. */
export const channel = "taskfiber_tasks"

const firstPause = Duration.millis(100)
const resubscribe = Schedule.min([Schedule.exponential(firstPause), Schedule.spaced(Duration.seconds(10))])

/** Wake-ups over the application's PgClient. */
export const layer: Layer.Layer<Wakeups, never, PgClient.PgClient> = Layer.effect(
  Wakeups,
  Effect.gen(function*() {
    const pg = yield* PgClient.PgClient
    return Wakeups.of({
      subscribe: (onReady) =>
        Effect.gen(function*() {
          const scope = yield* Effect.scope
          // Done once LISTEN is confirmed, or has failed once.
          const live = yield* Deferred.make<void>()
          const outages = Outages.make("wake-up listener")
          const onFailure = (cause: Cause.Cause<unknown>) =>
            Cause.hasInterruptsOnly(cause)
              ? Effect.failCause(cause)
              : Effect.andThen(Deferred.succeed(live, undefined), outages.failed(cause))
          // One subscription: a failure to LISTEN fails it (retried below, with a
          // growing pause); a listener lost after LISTEN worked ends it, so that the
          // next one starts over at the shortest pause, not where an earlier outage
          // left the backoff (10 s).
          const session = Effect.gen(function*() {
            const notifications = yield* pg.listen(channel)
            yield* Deferred.succeed(live, undefined)
            yield* outages.recovered
            onReady(undefined)
            return yield* Effect.forever(Effect.map(Queue.take(notifications), (n) => onReady(n.payload))).pipe(
              Effect.sandbox,
              Effect.catch((cause) => Effect.andThen(onFailure(cause), Effect.sleep(firstPause)))
            )
          }).pipe(
            Effect.scoped,
            // Defects too: a listener that stopped for good would leave every wake-up
            // to the dispatcher's 30 s re-check.
            Effect.sandbox,
            Effect.tapError((cause) => Effect.ignore(onFailure(cause)))
          )
          yield* Effect.forkIn(
            Effect.forever(Effect.retry(session, { schedule: resubscribe, while: (cause) => !Cause.hasInterruptsOnly(cause) })),
            scope
          )
          yield* Deferred.await(live)
        })
    })
  })
)

