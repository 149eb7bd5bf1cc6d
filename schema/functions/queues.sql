-- Pausing and resuming a queue. A paused queue's tasks are not claimed (claim.sql
-- leaves its queues out) and do not count as next due (the dispatchers' wake-up
-- timer, PgTaskStore.msUntilNextDue): they wait as they are, queued or retrying,
-- their attempts untouched; enqueues into the queue go on; tasks already running in
-- it finish (or retry, into the pause) as usual.
--
-- A claim reads the paused set once, when it begins: a claim already under way when
-- a pause commits may still take that queue's tasks (they run like those claimed
-- before), every claim that begins after it does not. Making the pause wait for the
-- claims in flight (a lock every claim would share and a pause take alone) would put
-- a lock on the hottest statement, and a pause behind a caller's long transaction
-- would stop every claimer of every queue while it waited.

-- Pauses p_queue; true if it was running, false if it was paused already (its first
-- pause, and that pause's time and reason, are kept).
create function taskfiber.pause_queue(p_queue text, p_reason text)
returns boolean language sql as $$
  with paused as (
    insert into taskfiber.paused_queues (queue, reason) values (p_queue, p_reason)
      on conflict (queue) do nothing
    returning true)
  select exists (select from paused)
$$;

-- Resumes p_queue; true if it was paused. Either way the dispatchers serving it are
-- woken (taskfiber_tasks, as an enqueue wakes them: history.sql), when this
-- transaction commits, so that its due tasks are claimed at once rather than at the
-- next re-check: an idle dispatcher sleeps until a wake-up or a due time, and a
-- paused queue's tasks gave it none. Waking them when nothing was paused costs a
-- claim that finds what it would have found anyway, and lets a resume nudge
-- dispatchers after the row was deleted by hand.
create function taskfiber.resume_queue(p_queue text)
returns boolean language plpgsql as $$
declare
  was_paused boolean;
begin
  delete from taskfiber.paused_queues p where p.queue = p_queue;
  was_paused := found;
  perform pg_notify('taskfiber_tasks', p_queue);
  return was_paused;
end $$;
