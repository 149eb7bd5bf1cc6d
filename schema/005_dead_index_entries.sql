-- taskfiber 005: the claim and the completion stay fast however many rows were
-- claimed, finished or are running since the last vacuum, and after a large
-- statement. Everything here was found by measuring a worker's loop (claim 10,
-- complete them, each committed; 20,000 queued; PostgreSQL 15, 2 cores) after one
-- claim of 5,000 tasks by another worker:
--
--                                              004            005
--   level probe (first one after the 5,000)    3,568 buffers  the same, once; then ~40
--   completion of 10, 5,000 others running     2.4 ms         0.55 ms
--   status-change trigger, per call            370 ms (JIT)   0.24 ms
--
-- Every claim leaves the claimed rows' old versions in tasks_claim_idx until
-- vacuum removes them. A plain index scan that meets such an entry marks it dead
-- (LP_DEAD) once no snapshot can see the row, and later scans skip it without
-- visiting the table. An index-only scan never marks entries, so 004's level
-- probes, which the planner ran index-only, visited the table for every row claimed
-- since the last vacuum, on every claim. And the probe "does this level hold a due
-- task?" ran as a sequential scan stopping at the first due row: it read every page
-- of finished tasks before it.
--
-- (`set enable_seqscan = off` on the function would have fixed the probe without
-- restating the function, but the setting also holds for the statements of the
-- triggers the claim fires; their plans, cached with its huge cost, crossed
-- jit_above_cost: 290 ms of JIT compilation per call.)
--
-- 004's claim, with three changes: no index-only scans, the due probe reads the
-- level's earliest run_at in index order, and generic plans.
create or replace function taskfiber.claim(
  p_worker text, p_queues text[], p_limit integer, p_lease_ms bigint,
  p_ageing_step_seconds double precision, p_ageing_max_boost double precision,
  p_async_commit boolean default false)
returns setof taskfiber.tasks language plpgsql
-- The planner prices each TID fetch as a random disk read (random_page_cost 4), so
-- for a few hundred rows it preferred a seq scan of the whole table; the rows just
-- locked are in shared buffers. SSD-like costing, for this call only. No
-- index-only scans: they never mark dead entries (see the top of this file).
set random_page_cost = 1.1
set enable_indexonlyscan = off
-- Its statements are index probes whatever the arguments; re-planning them on every
-- call (PL/pgSQL's custom plans) was a fifth of a small claim's time.
set plan_cache_mode = force_generic_plan
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
      -- The level's earliest run_at, read in index order: an `exists (… run_at <=
      -- ts)` was planned as a sequential scan stopping at the first due row.
      if (select t.run_at from taskfiber.tasks t
           where t.status in ('queued', 'retrying') and t.queue = q and t.priority = level
           order by t.run_at limit 1) <= ts then
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

-- The completion locked its rows through `status = 'running'`, and updated them
-- under the same condition. That condition matches tasks_running_idx, and with
-- statistics taken while nothing ran, the planner read that whole index (every
-- running task of every worker, dead entries included) and filtered on the ids or
-- addresses: 2 ms per batch with 5,000 tasks running. Now the lock looks the ids
-- up by primary key and reads their status from the locked rows (FOR UPDATE
-- returns the newest version, which nobody else can change until we commit); the
-- update reaches the running ones by address alone.
create or replace function taskfiber.complete_tasks(p_worker text, p_items jsonb)
returns setof uuid language plpgsql set random_page_cost = 1.1 as $$
declare
  tids tid[];
begin
  select coalesce(array_agg(l.ctid) filter (where l.status = 'running'), '{}') into tids from (
    select x.ctid, x.status from taskfiber.tasks x
     where x.id = any(array(select (i.value ->> 'id')::uuid from jsonb_array_elements(p_items) i))
       and x.worker_id = p_worker
     order by x.id for update) l;
  -- running → succeeded, as tasks_before_write would write it.
  perform set_config('taskfiber.hot_path', 'on', true);
  return query
    update taskfiber.tasks t
       set status = 'succeeded', result = i.value -> 'result',
           revision = t.revision + 1, lease_expires_at = null,
           finished_at = greatest(c.ts, t.started_at, t.created_at),
           updated_at = greatest(c.ts, t.updated_at)
      from jsonb_array_elements(p_items) i, (select clock_timestamp() as ts) c
     where t.ctid = any(tids) and t.id = (i.value ->> 'id')::uuid
    returning t.id;
  perform set_config('taskfiber.hot_path', 'off', true);
end $$;

-- The claim and the completion (taskfiber.hot_path on) change the status of every
-- row they update, to running or succeeded, from a status that is not failed: of
-- the trigger's statements only the history and the outbox apply. Skipping the
-- others (each a join of the two transition tables) saved a third of the trigger.
create or replace function taskfiber.tasks_after_update() returns trigger language plpgsql set jit = off as $$
begin
  if current_setting('taskfiber.hot_path', true) = 'on' then
    insert into taskfiber.task_events (task_id, seq, from_status, to_status, attempt, error, worker_id, at)
      select n.id, n.revision, o.status, n.status, n.attempt, null, n.worker_id, n.updated_at
      from new_rows n join old_rows o on o.id = n.id;
    insert into taskfiber.outbox (topic, key, payload, headers)
      select s.outbox_topic, n.id::text, taskfiber.status_event(n, o.status), taskfiber.trace_headers(n)
      from new_rows n join old_rows o on o.id = n.id, taskfiber.settings s
      where s.outbox_topic is not null;
    return null;
  end if;
  -- Lease renewals and progress writes change no status: leave at once.
  if not exists (select 1 from new_rows n join old_rows o on o.id = n.id where n.status <> o.status) then
    return null;
  end if;
  insert into taskfiber.task_events (task_id, seq, from_status, to_status, attempt, error, worker_id, at)
    select n.id, n.revision, o.status, n.status, n.attempt,
           case when n.status in ('retrying', 'failed', 'cancelled') then n.last_error end,
           case when o.status = 'running' or n.status = 'running' then n.worker_id end,
           n.updated_at
    from new_rows n join old_rows o on o.id = n.id
    where n.status <> o.status;
  insert into taskfiber.dead_letters (source, task_id, queue, type, reason, error, payload, attempt, created_at)
    select 'task', n.id, n.queue, n.type, coalesce(n.last_error ->> 'message', 'failed'),
           n.last_error, n.payload, n.attempt, n.finished_at
    from new_rows n join old_rows o on o.id = n.id
    where n.status = 'failed' and o.status <> 'failed';
  insert into taskfiber.outbox (topic, key, payload, headers)
    select s.outbox_topic, n.id::text, taskfiber.status_event(n, o.status), taskfiber.trace_headers(n)
    from new_rows n join old_rows o on o.id = n.id, taskfiber.settings s
    where n.status <> o.status and s.outbox_topic is not null;
  perform pg_notify('taskfiber_tasks', q.queue)
    from (select distinct n.queue from new_rows n join old_rows o on o.id = n.id
          where n.status = 'queued' and o.status <> 'queued') q;
  return null;
end $$;

-- No JIT compilation in the queue's functions. PL/pgSQL caches its plans for the
-- session, and a plan made once for a large statement (a claim or cancel of a few
-- thousand tasks, whose transition tables the triggers join) costs more than
-- jit_above_cost, so it carries JIT, and every later call that reuses it compiles
-- again: after one claim of 5,000 tasks, every status change of that connection
-- took 370 ms instead of 0.2 ms (measured, PostgreSQL 15). Their statements are
-- short index work; compilation never pays here.
alter function taskfiber.tasks_after_insert() set jit = off;
alter function taskfiber.tasks_after_delete() set jit = off;
alter function taskfiber.claim(text, text[], integer, bigint, double precision, double precision, boolean) set jit = off;
alter function taskfiber.enqueue(jsonb) set jit = off;
alter function taskfiber.complete_tasks(text, jsonb) set jit = off;
alter function taskfiber.cancel_tasks(uuid[], text) set jit = off;
alter function taskfiber.release_tasks(text, uuid[]) set jit = off;
alter function taskfiber.reap_expired(integer) set jit = off;
alter function taskfiber.extend_leases(text, bigint, uuid[]) set jit = off;
