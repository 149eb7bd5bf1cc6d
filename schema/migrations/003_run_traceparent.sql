-- The trace context of a task's last run (its span, when a tracing backend is
-- installed), written with the run's outcome: the parent of the status events that
-- outcome relays, so that a consumer of the status topic continues the trace below
-- the run. `traceparent` stays the enqueue's, the parent of every run.
alter table taskfiber.tasks add column run_traceparent text;
