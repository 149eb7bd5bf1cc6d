/**
 * The last outcomes of a supervisor, for observers (tests, metrics): a ring of
 * `capacity` entries until someone asks for them, then a sliding queue that holds
 * the ring's entries, oldest first, and every later one.
 *
 * A sliding queue from the start cost every run a drop once it was full (a
 * 20,000-task drain past the first 10,000: 2–3% of the worker's CPU, and the
 * dropped slots kept until the list compacted); a ring slot is one store.
 */
import { Effect, Queue } from "effect"

/** Records outcomes; hands them out as a queue on demand. */
export interface OutcomeLog<A> {
  /** Keeps `outcome`, dropping the oldest beyond the capacity. */
  readonly record: (outcome: A) => void
  /** The queue of outcomes: those kept so far, then every later one (sliding). */
  readonly queue: Effect.Effect<Queue.Dequeue<A>>
}

/** An empty log keeping at most `capacity` outcomes. */
export const make = <A>(capacity: number): OutcomeLog<A> => {
  const ring: Array<A> = []
  let oldest = 0
  let observed: Queue.Queue<A> | undefined
  return {
    record: (outcome) => {
      if (observed !== undefined) {
        Queue.offerUnsafe(observed, outcome)
      } else if (ring.length < capacity) {
        ring.push(outcome)
      } else {
        ring[oldest] = outcome
        oldest = (oldest + 1) % capacity
      }
    },
    queue: Effect.suspend(() =>
      observed !== undefined
        ? Effect.succeed(observed)
        : Effect.map(Queue.sliding<A>(capacity), (queue) => {
          // Synchronous from here: no outcome can fall between the ring and the queue.
          if (observed === undefined) {
            for (let i = 0; i < ring.length; i++) Queue.offerUnsafe(queue, ring[(oldest + i) % ring.length]!)
            ring.length = 0
            observed = queue
          }
          return observed
        })
    )
  }
}
