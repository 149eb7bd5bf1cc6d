-- Paused queues: their tasks are not claimed until the queue is resumed
-- (functions/queues.sql; the claim reads this table, functions/claim.sql). A row per
-- paused queue, not a flag on the tasks: pausing and resuming touch one row whatever
-- the queue holds, a task enqueued while its queue is paused needs nothing more, and
-- the claim's common case, no queue paused, is one read of an empty table. A queue
-- need not exist to be paused: pausing one before its first task holds that task too.
create table taskfiber.paused_queues (
  queue      text primary key
               constraint paused_queues_queue_length check (length(queue) between 1 and 128),
  paused_at  timestamptz not null default clock_timestamp(),
  reason     text constraint paused_queues_reason_length check (length(reason) <= 1000)
);
