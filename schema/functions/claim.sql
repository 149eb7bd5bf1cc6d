-- The claim: up to p_limit due tasks for p_worker, of the given queues (null: every
-- queue) that are not paused, and types (null: any), by effective priority, then
-- run_at, then id. Each moves to running under a new revision, which names this
-- claim (fencing, run.sql). FOR UPDATE SKIP LOCKED lets any number of claimers run
-- at once without waiting on each other or taking a task twice.
--
-- Effective priority is `priority + least(max_boost, waited / step)` (ageing, see
-- src/domain/Priority.ts). Within one (queue, priority) level the boost only grows
-- with the wait, so that level's tasks in (run_at, id) order, tasks_claim_idx's
-- order, are already in effective-priority order: the best due tasks overall are
-- among the first few of each level. The claim therefore walks the levels present
-- (a loose index scan: two index probes per level) and takes the first k due tasks
-- of each, then sorts those few candidates by effective priority and locks them.
-- With one level holding due tasks (the usual case) that level's index range is read
-- and locked directly, in order: exact, and nothing else is read. The cost grows
-- with the number of distinct priorities holding tasks (at most 2,001), not with the
-- number of tasks.
--
-- Measured (PostgreSQL 15, 2 cores, claim 250 of 20,000 due tasks, one level; the
-- rest of each figure is the UPDATE and its triggers):
--   top-K over all due tasks (seq scan + top-N sort), then lock   ~8 ms
--   levels walk, then k candidates per level, then lock by pk    ~4 ms
--   levels walk, then lock the one due level's index range       ~0.5 ms
-- A plain `ORDER BY <effective priority> LIMIT n FOR UPDATE SKIP LOCKED` sorts every
-- due row (LockRows sits between Limit and Sort): 122 ms for 10 of 100,000.
--
-- p_async_commit: the supervisor's claims need not wait for their WAL flush.
-- p_run_now: how many of the claimed tasks start at once (null: all); the rest wait
-- in the worker's prefetch buffer, their start not yet recorded (reaper.sql).
-- Returned in claim order: highest effective priority first.
create function taskfiber.claim(
  p_worker text, p_queues text[], p_limit integer, p_lease_ms bigint,
  p_ageing_step_seconds double precision, p_ageing_max_boost double precision,
  p_async_commit boolean default false, p_types text[] default null, p_run_now integer default null)
returns setof taskfiber.tasks language plpgsql
-- The planner prices each TID fetch as a random disk read (random_page_cost 4), so
-- for a few hundred rows it preferred a seq scan of the whole table; the rows just
-- locked are in shared buffers. SSD-like costing, for this call only.
set random_page_cost = 1.1
-- Every claim leaves the claimed rows' old versions in tasks_claim_idx until vacuum
-- removes them. A plain index scan that meets such an entry marks it dead once no
-- snapshot can see the row, and later scans skip it without visiting the table; an
-- index-only scan never marks entries, so index-only level probes visited the table
-- for every row claimed since the last vacuum, on every claim: 3,568 buffers for the
-- first probe after another worker's claim of 5,000, ~40 with plain index scans.
set enable_indexonlyscan = off
-- Not `enable_seqscan = off` (the due probe below reads in index order instead): it
-- would also hold for the statements of the triggers the claim fires, whose plans,
-- cached with its huge cost, crossed jit_above_cost: 290 ms of JIT a call.

-- Its statements are index probes whatever the arguments; re-planning them on every
-- call (PL/pgSQL's custom plans) was a fifth of a small claim's time.
set plan_cache_mode = force_generic_plan
-- A plan cached once for a large claim would carry JIT into every later call of the
-- session (history.sql: 370 ms instead of 0.2 ms a call).
set jit = off
as $$
declare
  -- Per level: enough that concurrent claimers holding some still leave p_limit.
  k integer := p_limit * 2 + 16;
  ts timestamptz := now();
  queues text[] := p_queues;
  paused text[];
  q text;
  level integer;
  due_queues text[] := '{}';
  due_levels integer[] := '{}';
  level_ids uuid[];
  candidates uuid[] := '{}';
  saturated boolean := false;
  picked uuid[];
  tids tid[];
  started_tids tid[];
begin
  -- No wait for the WAL flush (~0.5 ms): if the server crashes before it, the claim
  -- is undone and the task is queued again, exactly as if the worker had crashed
  -- after claiming (at-least-once either way). Off by default: the setting holds for
  -- the rest of the transaction, and a caller claiming inside its own transaction
  -- keeps its commit synchronous. Enqueues and outcomes always commit synchronously.
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
  -- Paused queues (queues.sql) are left out of the queues considered, here, once, so
  -- that every statement below (the levels walk, the exact fallback) sees only
  -- queues that may be claimed. The paused set is read whole: it is a few rows at
  -- most, and no queue paused (the usual case) is the scan of an empty table.
  -- Measured (PostgreSQL 15, 2 shared cores; µs a call, medians; the claim alone,
  -- without it: 27 for 1 queue holding nothing, 54 for 10; 1,350 for 100 of 20,000
  -- due tasks, 5,900 for 500):
  --   this: the set read into an array, the queues filtered by it
  --     +1–2 with no queue paused, +5 with one (the filter); batch claims unchanged
  --     within the noise (1,360–1,410 for 100, 5,830–5,910 for 500)
  --   a probe of paused_queues' primary key per queue, in the levels walk
  --     +2.5 a queue (10 queues: +24), paused or not
  --   the set read, each queue skipped in the walk and the fallback filtered
  --     (`continue when q = any(paused)`): as this within 2 µs, in two places
  -- A flag on the tasks would make a pause an update of every task of the queue, and
  -- a filter in the locking select a test per row read.
  paused := array(select p.queue from taskfiber.paused_queues p);
  if cardinality(paused) > 0 then
    queues := array(select u.q from unnest(queues) u(q) where u.q <> all(paused));
  end if;

  -- The levels holding due tasks: two index probes per level present.
  foreach q in array queues loop
    level := (select t.priority from taskfiber.tasks t
               where t.status in ('queued', 'retrying') and t.queue = q
               order by t.priority desc limit 1);
    while level is not null loop
      -- The level's earliest run_at, read in index order: an `exists (… run_at <=
      -- ts)` was planned as a sequential scan stopping at the first due row, which
      -- read every page of finished tasks before it.
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

  -- The type is not in the claim index: rows of other types in a level are read and
  -- skipped (a filter on rows already fetched; nothing measurable while they are
  -- few). A worker never takes a task it has no handler for, so a type enqueued
  -- during a rolling deploy waits for a worker that knows it.
  if cardinality(due_levels) = 0 then
    return;
  elsif cardinality(due_levels) = 1 then
    -- One level: its index order is the claim order; lock while reading it, skipping
    -- rows other claimers hold. Exact, no candidates.
    select coalesce(array_agg(l.id), '{}'), coalesce(array_agg(l.ctid), '{}') into picked, tids from (
      select t.id, t.ctid from taskfiber.tasks t
       where t.status in ('queued', 'retrying') and t.queue = due_queues[1]
         and t.priority = due_levels[1] and t.run_at <= ts
         and (p_types is null or t.type = any(p_types))
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
           and (p_types is null or t.type = any(p_types))
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
           and (p_types is null or t.type = any(p_types))
           and t.id <> all(picked)
         order by t.priority + least(p_ageing_max_boost,
                    greatest(0, date_part('epoch', ts - t.run_at)) / p_ageing_step_seconds) desc,
                  t.run_at, t.id
         limit p_limit - cardinality(picked)
         for update skip locked) l;
    end if;
  end if;

  -- queued|retrying → running, as tasks_before_write would write it, under
  -- taskfiber.hot_path (state_machine.sql). The rows are locked, so their addresses
  -- (ctid) cannot change until we commit: the update reaches them by a TID scan, each
  -- address the row it was when locked. `id = any(picked)`, or a join on
  -- unnest(picked), made the planner seq-scan or hash the whole table (2-7 ms per
  -- 20,000 tasks, and growing with the table); re-checking the ids beside the
  -- addresses was a linear search of the array for each row (~0.5 ms for 500).
  -- The first p_run_now in claim order start at once.
  started_tids := case when p_run_now is null then tids else tids[1:p_run_now] end;
  perform set_config('taskfiber.hot_path', 'on', true);
  return query
    with claimed as (
      update taskfiber.tasks t
         set status = 'running', worker_id = p_worker,
             lease_expires_at = c.ts + p_lease_ms * interval '1 millisecond',
             attempt = t.attempt + 1, revision = t.revision + 1,
             started_at = greatest(c.ts, t.created_at, t.started_at), finished_at = null,
             updated_at = greatest(c.ts, t.updated_at),
             handler_started = p_run_now is null or t.ctid = any(started_tids)
        from (select clock_timestamp() as ts) c
       where t.ctid = any(tids) and t.status in ('queued', 'retrying')
      returning t.*)
    select c.* from claimed c
      join unnest(picked) with ordinality as o(id, n) on o.id = c.id
     order by o.n;
  perform set_config('taskfiber.hot_path', 'off', true);
end $$;
