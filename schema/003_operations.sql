-- taskfiber 003: the queue's operations, one round trip each.
--
-- Every function is a single statement (or two, where a fresh snapshot is needed)
-- so that a call is one transaction; the triggers in 002 append the history.
-- src/store/TaskStore.ts calls these and nothing else writes tasks.

-- Claiming: due tasks of the given queues, by effective priority (priority plus an
-- ageing boost, the formula of src/domain/Priority.ts), then run_at, then id.
create index tasks_claim_idx on taskfiber.tasks (queue, priority desc, run_at)
  where status in ('queued', 'retrying');
-- The reaper's scan of expired leases and the heartbeat's renewal of one worker's.
create index tasks_running_idx on taskfiber.tasks (lease_expires_at)
  where status = 'running';
-- Listing with cursor pagination.
create index tasks_created_idx on taskfiber.tasks (created_at, id);

-- Idempotent batch enqueue. p_specs: a JSON array of
-- {id, queue, type, payload, priority, max_attempts, run_at | delay_ms, dedupe_key,
--  traceparent}. Returns, per input position, the task id and whether this call
-- created it (false: a task with that id or dedupe key already existed).
-- Two statements on purpose: under READ COMMITTED the second takes a fresh snapshot
-- and so sees a duplicate that a concurrent transaction committed while our INSERT
-- waited on it; one statement with a CTE would not see it.
create function taskfiber.enqueue(p_specs jsonb)
returns table (ord integer, id uuid, created boolean) language plpgsql as $$
declare
  inserted uuid[];
begin
  with ins as (
    insert into taskfiber.tasks
      (id, queue, type, payload, priority, max_attempts, run_at, dedupe_key, traceparent)
    select (s ->> 'id')::uuid,
           coalesce(s ->> 'queue', 'default'),
           s ->> 'type',
           coalesce(s -> 'payload', '{}'::jsonb),
           coalesce((s ->> 'priority')::integer, 0),
           coalesce((s ->> 'max_attempts')::integer, 25),
           coalesce((s ->> 'run_at')::timestamptz,
                    now() + coalesce((s ->> 'delay_ms')::bigint, 0) * interval '1 millisecond'),
           s ->> 'dedupe_key',
           s ->> 'traceparent'
    from jsonb_array_elements(p_specs) with ordinality as e(s, n)
    order by e.n
    on conflict do nothing
    returning taskfiber.tasks.id)
  select coalesce(array_agg(ins.id), '{}') into inserted from ins;

  -- created: this spec's own id was inserted, and no earlier spec of the batch
  -- already resolved to the same task.
  return query
    select r.n::integer, r.id,
           r.id = r.spec_id and r.id = any(inserted)
             and row_number() over (partition by r.id order by r.n) = 1
    from (
      select e.n, (e.s ->> 'id')::uuid as spec_id, t.id
      from jsonb_array_elements(p_specs) with ordinality as e(s, n)
      left join lateral (
        select x.id from taskfiber.tasks x
        where x.id = (e.s ->> 'id')::uuid
           or (e.s ->> 'dedupe_key' is not null and x.dedupe_key = e.s ->> 'dedupe_key')
        order by x.id = (e.s ->> 'id')::uuid desc
        limit 1) t on true) r
    order by r.n;
end $$;

-- Claim up to p_limit due tasks for p_worker (p_queues null: every queue), by
-- effective priority, then run_at, then id. FOR UPDATE SKIP LOCKED lets any number
-- of claimers run at once without waiting on each other or taking a task twice.
--
-- Measured (PostgreSQL 15, 2 cores, 100,000 due tasks, claim 10):
--   ORDER BY <ageing expr> LIMIT n FOR UPDATE SKIP LOCKED, numeric math   155 ms
--   the same with float8 math                                              122 ms
--     (LockRows sits between Limit and Sort, so PostgreSQL sorts every due
--      row — an external merge on disk — instead of keeping the top n)
--   top-K candidates without locks (top-N heapsort, 39 kB), then lock       43 ms
-- The candidate form won. It stays exact: when concurrent claimers hold so many
-- candidates that fewer than p_limit are left while more may exist, the full
-- locking query takes the rest. Still O(due tasks): the ageing term cannot be
-- read from a b-tree; making the claim index-ordered is benchmark work (bench/).
create function taskfiber.claim(
  p_worker text, p_queues text[], p_limit integer, p_lease_ms bigint,
  p_ageing_step_seconds double precision, p_ageing_max_boost double precision)
returns setof taskfiber.tasks language plpgsql as $$
declare
  k integer := p_limit * 4 + 64;
  candidates uuid[];
  picked uuid[];
begin
  select coalesce(array_agg(c.id), '{}') into candidates from (
    select id from taskfiber.tasks
     where status in ('queued', 'retrying') and run_at <= now()
       and (p_queues is null or queue = any(p_queues))
     order by priority + least(p_ageing_max_boost,
                greatest(0, date_part('epoch', now() - run_at)) / p_ageing_step_seconds) desc,
              run_at, id
     limit k) c;

  select coalesce(array_agg(l.id), '{}') into picked from (
    select id from taskfiber.tasks
     where id = any(candidates) and status in ('queued', 'retrying') and run_at <= now()
     order by priority + least(p_ageing_max_boost,
                greatest(0, date_part('epoch', now() - run_at)) / p_ageing_step_seconds) desc,
              run_at, id
     limit p_limit
     for update skip locked) l;

  if cardinality(picked) < p_limit and cardinality(candidates) = k then
    picked := picked || array(
      select id from taskfiber.tasks
       where status in ('queued', 'retrying') and run_at <= now()
         and (p_queues is null or queue = any(p_queues))
         and id <> all(picked)
       order by priority + least(p_ageing_max_boost,
                  greatest(0, date_part('epoch', now() - run_at)) / p_ageing_step_seconds) desc,
                run_at, id
       limit p_limit - cardinality(picked)
       for update skip locked);
  end if;

  -- Returned in the order picked: highest effective priority first.
  return query
    with claimed as (
      update taskfiber.tasks t
         set status = 'running', worker_id = p_worker,
             lease_expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond'
       where t.id = any(picked)
      returning t.*)
    select c.* from claimed c
      join unnest(picked) with ordinality as o(id, n) on o.id = c.id
     order by o.n;
end $$;

-- Renew every lease this worker holds: one statement per heartbeat.
create function taskfiber.extend_leases(p_worker text, p_lease_ms bigint)
returns setof uuid language sql as $$
  update taskfiber.tasks
     set lease_expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond'
   where status = 'running' and worker_id = p_worker
  returning id
$$;

-- Success for many tasks at once. p_items: [{id, result}]. Only tasks this worker
-- still holds are completed; the ids returned are those.
create function taskfiber.complete_tasks(p_worker text, p_items jsonb)
returns setof uuid language sql as $$
  update taskfiber.tasks t
     set status = 'succeeded', result = i.value -> 'result'
    from jsonb_array_elements(p_items) i
   where t.id = (i.value ->> 'id')::uuid and t.status = 'running' and t.worker_id = p_worker
  returning t.id
$$;

-- A transient failure: retrying at now() + p_delay_ms, or failed (dead letter) when
-- the task has used all its attempts.
create function taskfiber.retry_task(p_worker text, p_id uuid, p_error jsonb, p_delay_ms bigint)
returns setof taskfiber.tasks language sql as $$
  update taskfiber.tasks
     set status = case when attempt >= max_attempts then 'failed'::taskfiber.task_status
                       else 'retrying'::taskfiber.task_status end,
         last_error = p_error,
         run_at = case when attempt >= max_attempts then run_at
                       else clock_timestamp() + p_delay_ms * interval '1 millisecond' end
   where id = p_id and status = 'running' and worker_id = p_worker
  returning *
$$;

-- A permanent failure: failed, and a dead letter (trigger).
create function taskfiber.fail_task(p_worker text, p_id uuid, p_error jsonb)
returns setof taskfiber.tasks language sql as $$
  update taskfiber.tasks set status = 'failed', last_error = p_error
   where id = p_id and status = 'running' and worker_id = p_worker
  returning *
$$;

-- Cancel queued, retrying or running tasks; returns each cancelled task's previous
-- status, so that the runtime interrupts the fibers of those that were running.
create function taskfiber.cancel_tasks(p_ids uuid[], p_reason text)
returns table (id uuid, previous_status taskfiber.task_status) language sql as $$
  update taskfiber.tasks t
     set status = 'cancelled',
         last_error = jsonb_build_object('tag', 'TaskCancelled', 'message', p_reason,
                                         'classification', 'cancelled')
    from (select x.id, x.status from taskfiber.tasks x
           where x.id = any(p_ids) and x.status in ('queued', 'retrying', 'running')
           for update) prev
   where t.id = prev.id
  returning t.id, prev.status
$$;

-- Graceful shutdown: hand running tasks back to the queue; the trigger gives the
-- attempt back, the checkpoint stays. p_ids null: every task of the worker.
create function taskfiber.release_tasks(p_worker text, p_ids uuid[])
returns setof uuid language sql as $$
  update taskfiber.tasks set status = 'queued', run_at = now()
   where status = 'running' and worker_id = p_worker and (p_ids is null or id = any(p_ids))
  returning id
$$;

-- Expired leases (crashed or partitioned workers): retrying now, or failed when out
-- of attempts. The error is recorded as a LeaseExpired event ("stalled").
create function taskfiber.reap_expired(p_limit integer)
returns setof taskfiber.tasks language sql as $$
  with expired as (
    select id from taskfiber.tasks
     where status = 'running' and lease_expires_at < clock_timestamp()
     order by lease_expires_at
     limit p_limit
     for update skip locked)
  update taskfiber.tasks t
     set status = case when t.attempt >= t.max_attempts then 'failed'::taskfiber.task_status
                       else 'retrying'::taskfiber.task_status end,
         run_at = now(),
         last_error = jsonb_build_object('tag', 'LeaseExpired', 'classification', 'transient',
           'message', format('lease of worker %s expired at %s', t.worker_id, t.lease_expires_at))
    from expired
   where t.id = expired.id
  returning t.*
$$;

-- Dead-letter replay: the only way from failed back to queued. Attempts start over;
-- the checkpoint is kept so the handler can resume.
create function taskfiber.replay_task(p_id uuid)
returns setof taskfiber.tasks language plpgsql as $$
begin
  perform set_config('taskfiber.replay', 'on', true);
  return query
    update taskfiber.tasks set status = 'queued', run_at = now(), result = null
     where id = p_id and status = 'failed'
    returning *;
  perform set_config('taskfiber.replay', 'off', true);
  update taskfiber.dead_letters set replayed_at = clock_timestamp()
   where task_id = p_id and replayed_at is null;
end $$;

-- Progress and checkpoint of a running task held by this worker (null: unchanged).
create function taskfiber.record_progress(p_worker text, p_id uuid, p_progress jsonb, p_checkpoint jsonb)
returns boolean language sql as $$
  with u as (
    update taskfiber.tasks
       set progress = coalesce(p_progress, progress), checkpoint = coalesce(p_checkpoint, checkpoint)
     where id = p_id and status = 'running' and worker_id = p_worker
    returning 1)
  select exists (select 1 from u)
$$;
