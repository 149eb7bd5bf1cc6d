-- The reaper: expired leases (crashed, stalled or partitioned workers). A task whose
-- handler started goes to retrying, due at once (failed when out of attempts),
-- recorded as a LeaseExpired error. A task whose start was never recorded goes back
-- to queued, its attempt given back, at its old place in the queue (run_at kept).
--
-- Why the start is recorded at all: the claim counts the attempt of every task it
-- takes, also of those a worker holds in its prefetch buffer until a job slot is
-- free, so a crash of such a worker would use up an attempt of tasks that never ran
-- (and fail them, on their last). The claim marks which tasks start at once
-- (handler_started, claim.sql's p_run_now), the heartbeat marks the prefetched ones
-- whose handler has started (run.sql), and this gives back the rest.
--
-- Why give back instead of counting the attempt when the handler starts: counting at
-- start is a write before every prefetched handler, the round trip per round of
-- short tasks that a prefetch buffer exists to save; the give-back costs nothing
-- while nothing crashes. Its price: a handler that started less than a heartbeat
-- before the crash also has its attempt given back, so a task that crashes its
-- worker at once could loop. tasks.returned_unstarted bounds that: once a task was
-- handed back, a worker that prefetches it records its start before its handler
-- runs (record_start, on this rare path only), so its next crash counts.
create function taskfiber.reap_expired(p_limit integer)
returns setof taskfiber.tasks language sql
-- A plan cached once for a large batch would carry JIT into every later call
-- (history.sql).
set jit = off as $$
  with expired as (
    select id from taskfiber.tasks
     where status = 'running' and lease_expires_at < clock_timestamp()
     order by lease_expires_at
     limit p_limit
     for update skip locked)
  update taskfiber.tasks t
     set status = case when not t.handler_started then 'queued'::taskfiber.task_status
                       when t.attempt >= t.max_attempts then 'failed'::taskfiber.task_status
                       else 'retrying'::taskfiber.task_status end,
         returned_unstarted = t.returned_unstarted + case when t.handler_started then 0 else 1 end,
         -- No run wrote this outcome: its event follows the enqueue's trace, not an earlier run's.
         run_traceparent = null,
         run_at = case when t.handler_started then now() else t.run_at end,
         last_error = case when not t.handler_started then t.last_error
                      else jsonb_build_object('tag', 'LeaseExpired', 'classification', 'transient',
                        'message', format('lease of worker %s expired at %s', t.worker_id, t.lease_expires_at)) end
    from expired
   where t.id = expired.id
  returning t.*
$$;
