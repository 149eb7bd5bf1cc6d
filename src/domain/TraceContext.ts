/**
 * W3C trace context (`traceparent`: version, trace id, parent span id, flags), as
 * a Kafka message carries it and a task keeps it: the parent of the task's enqueue
 * and run spans. Pure.
 */

/** A parsed `traceparent`. */
export interface TraceParent {
  readonly traceId: string
  readonly spanId: string
  readonly sampled: boolean
}

const pattern = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/**
 * `text` as a trace parent, or undefined when it is not one: malformed, version
 * ff, or an all-zero trace or span id (W3C: such a header is ignored).
 */
export const parse = (text: string | null | undefined): TraceParent | undefined => {
  if (text === null || text === undefined) return undefined
  const m = pattern.exec(text.trim())
  if (m === null || m[1] === "ff" || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined
  return { traceId: m[2]!, spanId: m[3]!, sampled: (Number.parseInt(m[4]!, 16) & 1) === 1 }
}

/** The `traceparent` naming a span (version 00) as the parent of what follows it. */
export const format = (span: TraceParent): string => `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`
