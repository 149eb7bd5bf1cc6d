-- taskfiber 008: less work per claimed task.
--
-- Measured with auto_explain (PostgreSQL 15, 2 cores; a claim of 500 of 20,000
-- queued tasks, 6.6 ms in all), two pieces of the claim did nothing useful:
--   the update's `id = any(picked)` re-check, a linear search of a 500-element
--     array for each of the 500 rows its TID scan reached (~0.5 ms);
--   the triggers' outbox inserts with the outbox off: the planner put the
--     one-row settings table on the inside, so the join of the statement's old and
--     new rows ran in full before the empty settings row ended it (0.25 ms).
-- Alternating runs of a one-backend loop (claim 500, complete them, each
-- committed; removeOnComplete tasks, 20,000 queued), median of six each: claim
-- 13.5 → 12.1 µs per task (ranges 12.9–13.8 and 11.7–12.6), completion 5.6 both.
--
-- The functions are restated whole (CREATE OR REPLACE resets their settings, so
-- those are restated too); nothing else in them changed.

-- 005's claim, without the id re-check.
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
set jit = off
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
  -- commit: the update reaches them by a TID scan, and each address is the row it
  -- was when locked (008 dropped a re-check of the ids: a linear search of the
  -- 500-element array for each of 500 rows). `id = any(picked)`, or a join on
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
       where t.ctid = any(tids) and t.status in ('queued', 'retrying')
      returning t.*)
    select c.* from claimed c
      join unnest(picked) with ordinality as o(id, n) on o.id = c.id
     order by o.n;
  perform set_config('taskfiber.hot_path', 'off', true);
end $$;

-- 007's status-change trigger: the outbox insert runs only while the outbox is on.
create or replace function taskfiber.tasks_after_update() returns trigger language plpgsql
set jit = off
set enable_nestloop = off -- see 006, kept
as $$
begin
  if current_setting('taskfiber.hot_path', true) = 'on' then
    insert into taskfiber.task_events (task_id, seq, from_status, to_status, attempt, error, worker_id, at)
      select n.id, n.revision, o.status, n.status, n.attempt, null, n.worker_id, n.updated_at
      from new_rows n join old_rows o on o.id = n.id
      where not n.remove_on_complete;
    if exists (select from taskfiber.settings s where s.outbox_topic is not null) then
      insert into taskfiber.outbox (topic, key, payload, headers)
        select s.outbox_topic, n.id::text, taskfiber.status_event(n, o.status), taskfiber.trace_headers(n)
        from new_rows n join old_rows o on o.id = n.id, taskfiber.settings s
        where s.outbox_topic is not null;
    end if;
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
  if exists (select from taskfiber.settings s where s.outbox_topic is not null) then
    insert into taskfiber.outbox (topic, key, payload, headers)
      select s.outbox_topic, n.id::text, taskfiber.status_event(n, o.status), taskfiber.trace_headers(n)
      from new_rows n join old_rows o on o.id = n.id, taskfiber.settings s
      where n.status <> o.status and s.outbox_topic is not null;
  end if;
  perform pg_notify('taskfiber_tasks', q.queue)
    from (select distinct n.queue from new_rows n join old_rows o on o.id = n.id
          where n.status = 'queued' and o.status <> 'queued') q;
  return null;
end $$;

-- 007's creation trigger, likewise.
create or replace function taskfiber.tasks_after_insert() returns trigger language plpgsql set jit = off as $$
begin
  insert into taskfiber.task_events (task_id, seq, from_status, to_status, attempt, error, worker_id, at)
    select n.id, n.revision, null, n.status, n.attempt, null, null, n.created_at
      from new_rows n where not n.remove_on_complete;
  if exists (select from taskfiber.settings s where s.outbox_topic is not null) then
    insert into taskfiber.outbox (topic, key, payload, headers)
      select s.outbox_topic, n.id::text, taskfiber.status_event(n, null), taskfiber.trace_headers(n)
      from new_rows n, taskfiber.settings s where s.outbox_topic is not null;
  end if;
  perform pg_notify('taskfiber_tasks', q.queue) from (select distinct queue from new_rows) q;
  return null;
end $$;
