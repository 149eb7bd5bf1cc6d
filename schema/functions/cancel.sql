-- Cancel queued, retrying or running tasks from outside their runs (a handler's own
-- cancellation is run.sql's cancel_claimed). Returns each cancelled task's previous
-- status, so that the runtime interrupts the fibers of those that were running. The
-- locks are taken in id order, as by every statement that locks several tasks
-- (complete.sql).
create function taskfiber.cancel_tasks(p_ids uuid[], p_reason text)
returns table (id uuid, previous_status taskfiber.task_status) language sql
-- A plan cached once for a large cancel would carry JIT into every later call
-- (history.sql).
set jit = off as $$
  update taskfiber.tasks t
     set status = 'cancelled', run_traceparent = null, -- a cancel from outside: no run's outcome
         last_error = jsonb_build_object('tag', 'TaskCancelled', 'message', p_reason,
                                         'classification', 'cancelled')
    from (select x.id, x.status from taskfiber.tasks x
           where x.id = any(p_ids) and x.status in ('queued', 'retrying', 'running')
           order by x.id for update) prev
   where t.id = prev.id
  returning t.id, prev.status
$$;
