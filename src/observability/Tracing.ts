/**
 * Whether spans go anywhere: the one question every span made per task, per
 * message or per status event asks first (the run, the ingress's enqueue, the
 * relay's publish).
 */
import { Context, References, Tracer } from "effect"

/**
 * Whether `context` holds a tracer that exports spans. Effect's default, the
 * native tracer, keeps spans in memory and hands them to nobody; a span per run
 * for it cost about a third of the runtime's CPU per task (a 20,000-task drain:
 * 707 → 470 ms of worker CPU, medians of eight alternating runs), for nothing any
 * backend could see. Effect documents this comparison for exactly that purpose.
 */
export const tracingIn = (context: Context.Context<never>): boolean =>
  Context.get(context, References.TracerEnabled) && Context.get(context, Tracer.Tracer) !== Tracer.nativeTracer
