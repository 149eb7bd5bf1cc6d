/**
 * A tracing backend that keeps the spans it ended, as an exporter would receive
 * them: for tests of spans, without an exporter.
 */
import { type Exit, Tracer } from "effect"

export const recordingTracer = () => {
  const ended: Array<Tracer.Span> = []
  class RecordedSpan extends Tracer.NativeSpan {
    override end(endTime: bigint, exit: Exit.Exit<unknown, unknown>): void {
      super.end(endTime, exit)
      ended.push(this)
    }
  }
  return { ended, tracer: Tracer.make({ span: (options) => new RecordedSpan(options) }) }
}
