-- taskfiber 004: the hot path. The claim reads the index in order instead of sorting
-- every due task; bulk enqueue skips lookups; many-row locks are taken in id order.
--
-- Effective priority is `priority + least(max_boost, waited / step)` (ageing, see
-- src/domain/Priority.ts). Within one (queue, priority) level the boost only grows
-- with the wait, so that level's tasks in (run_at, id) order are already in
-- effective-priority order: the best due tasks overall are among the first few of
-- each level. The claim therefore walks the levels present (a loose index scan:
-- two index probes per level) and takes the first k due tasks of each, then sorts
-- those few candidates by effective priority and locks them.
--
-- With one level holding due tasks (the usual case) that level's index range is read
-- and locked directly, SKIP LOCKED, in order: exact, and nothing else is read.
--
-- Measured (PostgreSQL 15, 2 cores, claim 250 of 20,000 due tasks, one level,
-- auto_explain; the rest of each figure is the UPDATE and its triggers):
--   003's top-K over all due tasks (seq scan + top-N sort), then lock   ~8 ms
--   levels walk, then k candidates per level, then lock by pk          ~4 ms
--   levels walk, then lock the one due level's index range             ~0.5 ms
-- It grows with the number of distinct priorities holding tasks (at most 2,001),
-- not with the number of tasks.

-- Enqueue, claim and completion set the bookkeeping columns themselves (the same
-- rules as taskfiber.tasks_before_write, for their moves only) and skip the
-- per-row PL/pgSQL trigger, ~8 µs a row: they raise `taskfiber.hot_path` for their
-- statement alone. Every other write, raw SQL included, still passes the trigger.
drop trigger tasks_before_write on taskfiber.tasks;
create trigger tasks_before_write before insert or update on taskfiber.tasks
  for each row when (current_setting('taskfiber.hot_path', true) is distinct from 'on')
  execute function taskfiber.tasks_before_write();

drop index taskfiber.tasks_claim_idx;
create index tasks_claim_idx on taskfiber.tasks (queue, priority desc, run_at, id)
  where status in ('queued', 'retrying');

-- One more parameter than 003's claim: whether the claim may commit asynchronously.
drop function taskfiber.claim(text, text[], integer, bigint, double precision, double precision);

create function taskfiber.claim(
  p_worker text, p_queues text[], p_limit integer, p_lease_ms bigint,
  p_ageing_step_seconds double precision, p_ageing_max_boost double precision,
  p_async_commit boolean default false)
returns setof taskfiber.tasks language plpgsql
-- The planner prices each TID fetch as a random disk read (random_page_cost 4), so
-- for a few hundred rows it preferred a seq scan of the whole table; the rows just
-- locked are in shared buffers. SSD-like costing, for this call only.
set random_page_cost = 1.1
as $$
declare
  -- Per level: enough that concurrent claimers holding some still leave p_limit.
  k integer := p_limit * 2 + 16;
  ts timestamptz := now();
  queues text[] := p_queues;
  q text;
  level integer;
  due_queues text[] := '{}';
  due_levels integer[] := '{}';
  level_ids uuid[];
  candidates uuid[] := '{}';
  saturated boolean := false;
  picked uuid[];
  tids tid[];
begin
  -- The supervisor's claims (p_async_commit) need not wait for their WAL flush
  -- (~0.5 ms here): if the server crashes before the flush, the claim is undone and
  -- the task is queued again, exactly as if the worker had crashed after claiming
  -- (at-least-once either way). Off by default: the setting holds for the rest of
  -- the transaction, and a caller claiming inside its own transaction keeps its
  -- commit synchronous. Enqueues and outcomes always commit synchronously.
  if p_async_commit then
    perform set_config('synchronous_commit', 'off', true);
  end if;
  if queues is null then
    -- Every queue holding claimable tasks: a loose index scan over the queue column.
    queues := array(
      with recursive qs(queue) as (
        (select t.queue from taskfiber.tasks t where t.status in ('queued', 'retrying')
          order by t.queue limit 1)
        union all
        select (select t.queue from taskfiber.tasks t
                 where t.status in ('queued', 'retrying') and t.queue > qs.queue
                 order by t.queue limit 1)
          from qs where qs.queue is not null)
      select qs.queue from qs where qs.queue is not null);
  end if;

  -- The levels holding due tasks: two index probes per level present.
  foreach q in array queues loop
    level := (select t.priority from taskfiber.tasks t
               where t.status in ('queued', 'retrying') and t.queue = q
               order by t.priority desc limit 1);
    while level is not null loop
      if exists (select 1 from taskfiber.tasks t
                  where t.status in ('queued', 'retrying') and t.queue = q and t.priority = level
                    and t.run_at <= ts) then
        due_queues := due_queues || q;
        due_levels := due_levels || level;
      end if;
      level := (select t.priority from taskfiber.tasks t
                 where t.status in ('queued', 'retrying') and t.queue = q and t.priority < level
                 order by t.priority desc limit 1);
    end loop;
  end loop;

  if cardinality(due_levels) = 0 then
    return;
  elsif cardinality(due_levels) = 1 then
    -- One level (the usual case): its index order is the claim order; lock while
    -- reading it, skipping rows other claimers hold. Exact, no candidates.
    select coalesce(array_agg(l.id), '{}'), coalesce(array_agg(l.ctid), '{}') into picked, tids from (
      select t.id, t.ctid from taskfiber.tasks t
       where t.status in ('queued', 'retrying') and t.queue = due_queues[1]
         and t.priority = due_levels[1] and t.run_at <= ts
       order by t.run_at, t.id
       limit p_limit
       for update skip locked) l;
  else
    -- Several levels: the first k due tasks of each, merged by effective priority.
    for i in 1 .. cardinality(due_levels) loop
      level_ids := array(
        select t.id from taskfiber.tasks t
         where t.status in ('queued', 'retrying') and t.queue = due_queues[i]
           and t.priority = due_levels[i] and t.run_at <= ts
         order by t.run_at, t.id
         limit k);
      candidates := candidates || level_ids;
      saturated := saturated or cardinality(level_ids) = k;
    end loop;

    select coalesce(array_agg(l.id), '{}'), coalesce(array_agg(l.ctid), '{}') into picked, tids from (
      select t.id, t.ctid from taskfiber.tasks t
       where t.id = any(candidates) and t.status in ('queued', 'retrying') and t.run_at <= ts
       order by t.priority + least(p_ageing_max_boost,
                  greatest(0, date_part('epoch', ts - t.run_at)) / p_ageing_step_seconds) desc,
                t.run_at, t.id
       limit p_limit
       for update skip locked) l;

    -- Concurrent claimers held so many candidates of a full level that fewer than
    -- p_limit are left while more may exist: the exact query takes the rest.
    if cardinality(picked) < p_limit and saturated then
      select picked || coalesce(array_agg(l.id), '{}'), tids || coalesce(array_agg(l.ctid), '{}')
        into picked, tids from (
        select t.id, t.ctid from taskfiber.tasks t
         where t.status in ('queued', 'retrying') and t.run_at <= ts
           and t.queue = any(queues)
           and t.id <> all(picked)
         order by t.priority + least(p_ageing_max_boost,
                    greatest(0, date_part('epoch', ts - t.run_at)) / p_ageing_step_seconds) desc,
                  t.run_at, t.id
         limit p_limit - cardinality(picked)
         for update skip locked) l;
    end if;
  end if;

  -- The rows are locked, so their physical addresses (ctid) cannot change until we
  -- commit: the update reaches them by a TID scan. `id = any(picked)`, or a join on
  -- unnest(picked), made the planner seq-scan or hash the whole table (2-7 ms per
  -- 20,000 tasks, and growing with the table).
  -- Returned in the order picked: highest effective priority first.
  -- queued|retrying → running, as tasks_before_write would write it.
  perform set_config('taskfiber.hot_path', 'on', true);
  return query
    with claimed as (
      update taskfiber.tasks t
         set status = 'running', worker_id = p_worker,
             lease_expires_at = c.ts + p_lease_ms * interval '1 millisecond',
             attempt = t.attempt + 1, revision = t.revision + 1,
             started_at = greatest(c.ts, t.created_at, t.started_at), finished_at = null,
             updated_at = greatest(c.ts, t.updated_at)
        from (select clock_timestamp() as ts) c
       where t.ctid = any(tids) and t.id = any(picked) and t.status in ('queued', 'retrying')
      returning t.*)
    select c.* from claimed c
      join unnest(picked) with ordinality as o(id, n) on o.id = c.id
     order by o.n;
  perform set_config('taskfiber.hot_path', 'off', true);
end $$;

-- Batch enqueue, as in 003, with two savings: the new rows are written as the
-- trigger would write them (skipping it), and when every spec was inserted, each
-- was created under its own id and no lookup is needed (one index probe less per
-- task).
create or replace function taskfiber.enqueue(p_specs jsonb)
returns table (ord integer, id uuid, created boolean) language plpgsql as $$
declare
  inserted uuid[];
begin
  -- A new task, as tasks_before_write would write it: queued, attempt 0, revision
  -- 1, created now by the database clock.
  perform set_config('taskfiber.hot_path', 'on', true);
  with ins as (
    insert into taskfiber.tasks
      (id, queue, type, payload, priority, max_attempts, run_at, dedupe_key, traceparent,
       status, attempt, revision, created_at, updated_at)
    select (s ->> 'id')::uuid,
           coalesce(s ->> 'queue', 'default'),
           s ->> 'type',
           coalesce(s -> 'payload', '{}'::jsonb),
           coalesce((s ->> 'priority')::integer, 0),
           coalesce((s ->> 'max_attempts')::integer, 25),
           coalesce((s ->> 'run_at')::timestamptz,
                    now() + coalesce((s ->> 'delay_ms')::bigint, 0) * interval '1 millisecond'),
           s ->> 'dedupe_key',
           s ->> 'traceparent',
           'queued', 0, 1, c.ts, c.ts
    from jsonb_array_elements(p_specs) with ordinality as e(s, n), (select clock_timestamp() as ts) c
    order by e.n
    on conflict do nothing
    returning taskfiber.tasks.id)
  select coalesce(array_agg(ins.id), '{}') into inserted from ins;
  perform set_config('taskfiber.hot_path', 'off', true);

  if cardinality(inserted) = jsonb_array_length(p_specs) then
    return query
      select e.n::integer, (e.s ->> 'id')::uuid, true
        from jsonb_array_elements(p_specs) with ordinality as e(s, n)
       order by e.n;
    return;
  end if;

  -- Some were duplicates. created: this spec's own id was inserted, and no earlier
  -- spec of the batch already resolved to the same task.
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

-- Statements that lock many rows of one worker take the locks in id order. With
-- batched completion, `complete_tasks` and the heartbeat's `extend_leases` (and a
-- shutdown's release, a multi-task cancel) touch overlapping sets of rows; in
-- arbitrary order two of them deadlock (seen: 40P01 in the drain benchmark). The
-- claim and the reaper never wait (SKIP LOCKED), so they need no order.

-- p_ids (new): renew only these of the worker's tasks. A run the worker gave up
-- (its outcome could not be written) is no longer renewed, so its lease expires and
-- the reaper retries it; renewing every row of the worker kept such a task leased
-- for as long as the worker lived.
drop function taskfiber.extend_leases(text, bigint);
create function taskfiber.extend_leases(p_worker text, p_lease_ms bigint, p_ids uuid[] default null)
returns setof uuid language sql as $$
  update taskfiber.tasks t
     set lease_expires_at = clock_timestamp() + p_lease_ms * interval '1 millisecond'
    from (select x.id from taskfiber.tasks x
           where x.status = 'running' and x.worker_id = p_worker
             and (p_ids is null or x.id = any(p_ids))
           order by x.id for update) l
   where t.id = l.id
  returning t.id
$$;

-- The ids go through an array so that the lookup is an index scan on the primary
-- key: a join against jsonb_array_elements() has no statistics, and PostgreSQL
-- chose a nested loop re-parsing the JSON per row (31 ms for 100 tasks). The locked
-- rows are then updated by address (TID scan), as in the claim. Two statements on
-- purpose: a row updated by someone else (the heartbeat) after this call's snapshot
-- is locked in its newest version, whose address only a later snapshot can see; in
-- one statement the update silently missed such rows (seen in the scale test).
create or replace function taskfiber.complete_tasks(p_worker text, p_items jsonb)
returns setof uuid language plpgsql set random_page_cost = 1.1 as $$
declare
  tids tid[];
begin
  tids := array(
    select x.ctid from taskfiber.tasks x
     where x.id = any(array(select (i.value ->> 'id')::uuid from jsonb_array_elements(p_items) i))
       and x.status = 'running' and x.worker_id = p_worker
     order by x.id for update);
  -- running → succeeded, as tasks_before_write would write it.
  perform set_config('taskfiber.hot_path', 'on', true);
  return query
    update taskfiber.tasks t
       set status = 'succeeded', result = i.value -> 'result',
           revision = t.revision + 1, lease_expires_at = null,
           finished_at = greatest(c.ts, t.started_at, t.created_at),
           updated_at = greatest(c.ts, t.updated_at)
      from jsonb_array_elements(p_items) i, (select clock_timestamp() as ts) c
     where t.ctid = any(tids) and t.id = (i.value ->> 'id')::uuid and t.status = 'running'
    returning t.id;
  perform set_config('taskfiber.hot_path', 'off', true);
end $$;

create or replace function taskfiber.cancel_tasks(p_ids uuid[], p_reason text)
returns table (id uuid, previous_status taskfiber.task_status) language sql as $$
  update taskfiber.tasks t
     set status = 'cancelled',
         last_error = jsonb_build_object('tag', 'TaskCancelled', 'message', p_reason,
                                         'classification', 'cancelled')
    from (select x.id, x.status from taskfiber.tasks x
           where x.id = any(p_ids) and x.status in ('queued', 'retrying', 'running')
           order by x.id for update) prev
   where t.id = prev.id
  returning t.id, prev.status
$$;

create or replace function taskfiber.release_tasks(p_worker text, p_ids uuid[])
returns setof uuid language sql as $$
  update taskfiber.tasks t set status = 'queued', run_at = now()
    from (select x.id from taskfiber.tasks x
           where x.status = 'running' and x.worker_id = p_worker
             and (p_ids is null or x.id = any(p_ids))
           order by x.id for update) l
   where t.id = l.id
  returning t.id
$$;

-- History keeps no foreign key to its task. The key's check ran once per event row
-- and took a KEY SHARE lock on a task row the same transaction had just updated,
-- which makes PostgreSQL create a MultiXact per row: in a claim of 250 tasks the
-- checks cost 25 ms of the statement's 45 ms. Events are written only by the
-- triggers of 002, from the task rows themselves, so the key guarded nothing they
-- could get wrong; its cascade (history goes with its task) is now a trigger.
alter table taskfiber.task_events drop constraint task_events_task_id_fkey;

-- Deleting tasks (pruning) deletes their history, one statement per statement. The
-- delete runs inside this trigger, so task_events' append-only guard sees
-- pg_trigger_depth() = 2, as it did under the cascade.
create function taskfiber.tasks_after_delete() returns trigger language plpgsql as $$
begin
  delete from taskfiber.task_events e using old_rows o where e.task_id = o.id;
  return null;
end $$;

create trigger tasks_after_delete after delete on taskfiber.tasks
  referencing old table as old_rows
  for each statement execute function taskfiber.tasks_after_delete();
