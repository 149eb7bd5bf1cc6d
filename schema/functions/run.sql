-- The statements of a run besides its claim and completion, each fenced by its
-- claim. A claim moves a task to running and raises its revision; nothing but the
-- next status change raises it again. So (id, revision) names one claim, and every
-- statement of a run passes the revision its claim returned and changes the task
-- only while it is still running under that claim. A run that stalled past its
-- lease, was reaped and claimed again (by any worker, itself included) is refused
-- everything: its late success, its retry, its progress. `status = 'running' and
-- worker_id = …` alone would not do: the same worker's next claim of the task
-- satisfies it too.

-- A transient failure: retrying at now() + p_delay_ms, or failed (dead letter) when
-- the task has used all its attempts.
-- p_traceparent: the run's span (null without a tracing backend), for its status event.
create function taskfiber.retry_task(p_worker text, p_id uuid, p_revision integer, p_error jsonb, p_delay_ms bigint,
                                     p_traceparent text)
returns setof taskfiber.tasks language sql as $$
  update taskfiber.tasks
     set status = case when attempt >= max_attempts then 'failed'::taskfiber.task_status
                       else 'retrying'::taskfiber.task_status end,
         last_error = p_error, run_traceparent = p_traceparent,
         run_at = case when attempt >= max_attempts then run_at
                       else clock_timestamp() + p_delay_ms * interval '1 millisecond' end
   where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
  returning *
$$;

-- A permanent failure: failed, and a dead letter (history.sql).
create function taskfiber.fail_task(p_worker text, p_id uuid, p_revision integer, p_error jsonb, p_traceparent text)
returns setof taskfiber.tasks language sql as $$
  update taskfiber.tasks set status = 'failed', last_error = p_error, run_traceparent = p_traceparent
   where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
  returning *
$$;

-- The handler gave up (it failed with TaskCancelled): cancelled, if this claim
-- still holds the task. Cancellations from outside a run are cancel.sql's.
create function taskfiber.cancel_claimed(p_worker text, p_id uuid, p_revision integer, p_reason text, p_traceparent text)
returns boolean language sql as $$
  with u as (
    update taskfiber.tasks
       set status = 'cancelled', run_traceparent = p_traceparent,
           last_error = jsonb_build_object('tag', 'TaskCancelled', 'message', p_reason, 'classification', 'cancelled')
     where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
    returning 1)
  select exists (select from u)
$$;

-- Progress and checkpoint of a running task (null: unchanged).
create function taskfiber.record_progress(p_worker text, p_id uuid, p_revision integer, p_progress jsonb, p_checkpoint jsonb)
returns boolean language sql as $$
  with u as (
    update taskfiber.tasks
       set progress = coalesce(p_progress, progress), checkpoint = coalesce(p_checkpoint, checkpoint)
     where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
    returning 1)
  select exists (select from u)
$$;

-- A prefetched task once handed back unstarted (reaper.sql) has its start recorded
-- before its handler runs.
create function taskfiber.record_start(p_worker text, p_id uuid, p_revision integer)
returns boolean language sql as $$
  with u as (
    update taskfiber.tasks set handler_started = true
     where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
    returning 1)
  select exists (select from u)
$$;

-- Many claims at once (the heartbeat, a shutdown's release) are locked in id order,
-- as the completion's (complete.sql: in arbitrary order they deadlocked); the sort is
-- above the join, whatever its plan. They are reached through the primary key: from
-- PostgreSQL 18 a SQL function's statements go through the plan cache, whose custom
-- plans know the arrays' real size (1,000 claims with PREFETCH), and a hash join over
-- a sequential scan of the table became a choice. jit = off: see history.sql;
-- random_page_cost: see claim.sql.

-- Graceful shutdown: hand these claims' tasks back to the queue; the trigger gives
-- the attempt back, the checkpoint stays.
create function taskfiber.release_tasks(p_worker text, p_ids uuid[], p_revisions integer[])
returns setof uuid language sql
set jit = off set random_page_cost = 1.1 set enable_seqscan = off set enable_bitmapscan = off as $$
  update taskfiber.tasks t set status = 'queued', run_at = now()
    from (select x.id from unnest(p_ids, p_revisions) as c(id, revision)
            join taskfiber.tasks x on x.id = c.id and x.revision = c.revision
           where x.status = 'running' and x.worker_id = p_worker
           order by x.id for update of x) l
   where t.id = l.id
  returning t.id
$$;

-- The heartbeat: renews the leases of these claims and records which prefetched
-- ones have started (`p_started`); returns the ids still held. Only the claims
-- named: a run the worker gave up (its outcome could not be written) is not renewed,
-- so its lease expires and the reaper retries it.
create function taskfiber.extend_leases(p_worker text, p_lease_ms bigint, p_ids uuid[], p_revisions integer[], p_started boolean[])
returns setof uuid language sql
set jit = off set random_page_cost = 1.1 set enable_seqscan = off set enable_bitmapscan = off as $$
  update taskfiber.tasks t
     set lease_expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond',
         handler_started = t.handler_started or l.started
    from (select x.id, c.started from unnest(p_ids, p_revisions, p_started) as c(id, revision, started)
            join taskfiber.tasks x on x.id = c.id and x.revision = c.revision
           where x.status = 'running' and x.worker_id = p_worker
           order by x.id for update of x) l
   where t.id = l.id
  returning t.id
$$;
