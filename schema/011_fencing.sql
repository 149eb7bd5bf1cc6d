-- taskfiber 011: every statement of a run names its claim (fencing); a prefetched
-- task that never started keeps its attempt; a worker claims only the types it
-- knows; workers say what they serve; the hot path's shortcut cannot be forged.

-- 1. Fencing. A claim moves a task to running and raises its revision; nothing but
-- the next status change raises it again. So (id, revision) names one claim: every
-- statement of a run (completion, retry, failure, cancellation by the handler,
-- release, progress, lease renewal, start record) passes the revision its claim
-- returned and changes the task only while it is still running under that claim.
-- A run that stalled past its lease, was reaped and claimed again (by any worker,
-- itself included) is refused everything: its late success, its retry, its
-- progress. Before, these statements checked `status = 'running' and worker_id =
-- …` only, which the same worker's next claim of the task also satisfied.

-- 2. Attempts of prefetched tasks. The claim counts the attempt of every task it
-- takes, also of those a worker holds in its local buffer (PREFETCH) until a job
-- slot is free; when such a worker crashed, the reaper used up an attempt of tasks
-- that never ran (and failed them, when it was their last). Now the claim records
-- which tasks start at once (`p_run_now`: the first ones, in claim order; the
-- worker passes its free slots), the heartbeat records the prefetched ones whose
-- handler has started, and the reaper hands a task whose start was never recorded
-- back to the queue with its attempt, at its old place (run_at kept).
--
-- Why give back instead of counting the attempt when the handler starts: counting
-- at start is a write before every prefetched handler, which is the work a prefetch
-- buffer exists to save (a statement's round trip per round of short tasks). The
-- give-back costs nothing while nothing crashes. Its price: a handler that started
-- less than a heartbeat before the crash also has its attempt given back, so a
-- task that crashes its worker at once could loop. `returned_unstarted` bounds
-- that: once a task was handed back, a worker that prefetches it records its start
-- before its handler runs (one statement, on this rare path only), so its next
-- crash counts.
alter table taskfiber.tasks
  add column handler_started boolean not null default true,
  add column returned_unstarted integer not null default 0
    constraint tasks_returned_unstarted_non_negative check (returned_unstarted >= 0);

-- 3. The hot path cannot be forged. Enqueue, claim and completion raise
-- `taskfiber.hot_path` for their statement and skip the per-row trigger (~8 µs a
-- row, 004), writing the bookkeeping themselves. Any client can raise that setting
-- too; a raw `update … set status = 'running'` under it moved a cancelled task to
-- running. The statement triggers now check a hot-path statement: an insert must
-- make fresh queued tasks (each row checked); an update must be one of the two hot
-- moves for every row — all its tasks queued or retrying before and running after
-- (a claim), or all running before and succeeded after (a completion) — with the
-- revisions raised by one a row and the attempts by one a row for a claim, by
-- none for a completion (checked as sums over the statement).
--
-- Measured (claim of 500 from 20,000, one backend, 60 rounds, µs a claimed task):
-- the same checks per row, on a join of the transition tables, 11.2 and 11.9
-- against 8.9 without; one pass over each transition table with plain sums 8.2–8.8
-- against 7.6–9.2; sums weighted by a hash of each id (so that no row's count can
-- make up for another's) 8.6–9.0. The plain sums won: they refuse every move the
-- state machine forbids and every miscount a mistaken statement makes; what the
-- weights would add is a defence against a deliberate forger, who, owning the
-- table, can as well disable its triggers.
create function taskfiber.refuse_hot_write(p_id uuid, p_from taskfiber.task_status, p_to taskfiber.task_status)
returns boolean language plpgsql as $$
begin
  raise exception 'forbidden task write under taskfiber.hot_path: % -> % (task %)', p_from, p_to, p_id
    using errcode = 'TF001', table = 'tasks', column = 'status',
          hint = 'taskfiber.hot_path is for taskfiber''s own enqueue, claim and completion; other writes pass the state machine';
end $$;

create or replace function taskfiber.tasks_after_insert() returns trigger language plpgsql set jit = off as $$
begin
  if current_setting('taskfiber.hot_path', true) = 'on' then
    perform taskfiber.refuse_hot_write(n.id, null, n.status)
       from new_rows n
      where not (n.status = 'queued' and n.attempt = 0 and n.revision = 1
                 and n.started_at is null and n.finished_at is null
                 and n.lease_expires_at is null and n.worker_id is null
                 and n.created_at = n.updated_at and not n.has_events and n.returned_unstarted = 0);
  end if;
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

create or replace function taskfiber.tasks_after_update() returns trigger language plpgsql
set jit = off
set enable_nestloop = off -- see 006, kept
as $$
declare
  o_rows bigint; o_claimable bigint; o_running bigint; o_revisions bigint; o_attempts bigint;
  n_running bigint; n_succeeded bigint; n_revisions bigint; n_attempts bigint;
begin
  if current_setting('taskfiber.hot_path', true) = 'on' then
    select count(*), count(*) filter (where o.status in ('queued', 'retrying')), count(*) filter (where o.status = 'running'),
           coalesce(sum(o.revision), 0), coalesce(sum(o.attempt), 0)
      into o_rows, o_claimable, o_running, o_revisions, o_attempts
      from old_rows o;
    select count(*) filter (where n.status = 'running'),
           count(*) filter (where n.status = 'succeeded' and n.finished_at is not null and n.lease_expires_at is null),
           coalesce(sum(n.revision), 0), coalesce(sum(n.attempt), 0)
      into n_running, n_succeeded, n_revisions, n_attempts
      from new_rows n;
    if not (n_revisions = o_revisions + o_rows
            and ((o_claimable = o_rows and n_running = o_rows and n_attempts = o_attempts + o_rows)
              or (o_running = o_rows and n_succeeded = o_rows and n_attempts = o_attempts))) then
      perform taskfiber.refuse_hot_write(
        (select o.id from old_rows o limit 1), (select o.status from old_rows o limit 1), (select n.status from new_rows n limit 1));
    end if;
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

-- 4. The claim: 008's, with the types the worker knows (`p_types`, null: any; a
-- worker never takes a task it has no handler for, so a type enqueued during a
-- rolling deploy waits for a worker that knows it instead of being failed by one
-- that does not) and the number that start at once (`p_run_now`, null: all).
-- The type is not in the claim index: rows of other types in a level are read and
-- skipped (a filter on rows already fetched; nothing measurable while they are few).
drop function taskfiber.claim(text, text[], integer, bigint, double precision, double precision, boolean);

create function taskfiber.claim(
  p_worker text, p_queues text[], p_limit integer, p_lease_ms bigint,
  p_ageing_step_seconds double precision, p_ageing_max_boost double precision,
  p_async_commit boolean default false, p_types text[] default null, p_run_now integer default null)
returns setof taskfiber.tasks language plpgsql
set random_page_cost = 1.1
set enable_indexonlyscan = off
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
  started_tids tid[];
begin
  if p_async_commit then
    perform set_config('synchronous_commit', 'off', true);
  end if;
  if queues is null then
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

  foreach q in array queues loop
    level := (select t.priority from taskfiber.tasks t
               where t.status in ('queued', 'retrying') and t.queue = q
               order by t.priority desc limit 1);
    while level is not null loop
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
    select coalesce(array_agg(l.id), '{}'), coalesce(array_agg(l.ctid), '{}') into picked, tids from (
      select t.id, t.ctid from taskfiber.tasks t
       where t.status in ('queued', 'retrying') and t.queue = due_queues[1]
         and t.priority = due_levels[1] and t.run_at <= ts
         and (p_types is null or t.type = any(p_types))
       order by t.run_at, t.id
       limit p_limit
       for update skip locked) l;
  else
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

  -- queued|retrying → running, as tasks_before_write would write it (see 008 for
  -- the TID scan). The first p_run_now in claim order start at once; the rest wait
  -- in the worker's buffer, their start not yet recorded (section 2).
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

-- 5. The completion: 010's, fenced. Items carry the revision of their claim; the
-- ids and revisions, in id order, are joined to the tasks through the primary key
-- (a nested loop over the sorted array: rows reached in id order, as 010's
-- `id = any(sorted ids)` did, so the lock order is unchanged). Measured against
-- a `revision = revs[array_position(ids, id)]` filter: the array search is linear,
-- ~1 µs a task for batches of 500; the join costs nothing measurable over 010.
drop function taskfiber.complete_tasks(text, jsonb);

-- It returns the claims that completed their task (id and the claim's revision): a
-- batch may name a task twice, its stale claim and its current one.
create function taskfiber.complete_tasks(p_worker text, p_items jsonb)
returns table (id uuid, revision integer) language plpgsql
set random_page_cost = 1.1 set jit = off set enable_bitmapscan = off set enable_seqscan = off as $$
#variable_conflict use_column
declare
  ids uuid[];
  revs integer[];
  all_removed boolean := not exists (
    select from jsonb_array_elements(p_items) i where (i.value -> 'remove') is distinct from 'true'::jsonb);
  gone uuid[];
  gone_revisions integer[];
  keep tid[];
  removed bigint;
  ts timestamptz := clock_timestamp();
  relay_topic text := (select s.outbox_topic from taskfiber.settings s);
begin
  -- Every (id, revision) pair, in id order (one sort; both arrays come from the one
  -- sorted row stream, so they stay paired). A stale claim and the current one of
  -- the same task may share a batch: only the current one completes it, and the
  -- short way, finding fewer tasks than pairs, gives way to the general one.
  -- Measured: a distinct pass and two ordered aggregates cost 1.25 µs a task for
  -- 500 items, this 0.76, 010's distinct ids alone 0.65.
  select coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.revision), '{}')
    into ids, revs
    from (select (i.value ->> 'id')::uuid as id, (i.value ->> 'revision')::integer as revision
            from jsonb_array_elements(p_items) i order by 1, 2) c;
  for round in (case when all_removed then 1 else 2 end) .. 2 loop
    if round = 2 then
      select coalesce(array_agg(l.ctid) filter (where not l.remove_on_complete), '{}'),
             count(*) filter (where l.remove_on_complete)
        into keep, removed from (
        select x.ctid, x.remove_on_complete
          from unnest(ids, revs) as c(id, revision)
          join taskfiber.tasks x on x.id = c.id and x.revision = c.revision
         where x.status = 'running' and x.worker_id = p_worker
         order by x.id for update of x) l;
      if cardinality(keep) > 0 then
        perform set_config('taskfiber.hot_path', 'on', true);
        return query
          update taskfiber.tasks t
             set status = 'succeeded', result = i.value -> 'result',
                 revision = t.revision + 1, lease_expires_at = null,
                 finished_at = greatest(c.ts, t.started_at, t.created_at),
                 updated_at = greatest(c.ts, t.updated_at)
            from jsonb_array_elements(p_items) i, (select clock_timestamp() as ts) c
           where t.ctid = any(keep) and t.id = (i.value ->> 'id')::uuid
             and t.revision = (i.value ->> 'revision')::integer
          returning t.id, (i.value ->> 'revision')::integer;
        perform set_config('taskfiber.hot_path', 'off', true);
      end if;
      if removed = 0 then
        return;
      end if;
    end if;
    begin
      with deleted as (
        delete from taskfiber.tasks t
         using unnest(ids, revs) as c(id, revision)
         where t.id = c.id and t.revision = c.revision
           and t.status::text = 'running' and t.worker_id = p_worker and t.remove_on_complete
        returning t.*),
      relayed as (
        insert into taskfiber.outbox (topic, key, payload, headers)
          select relay_topic, d.id::text,
                 taskfiber.status_event(jsonb_populate_record(null::taskfiber.tasks, to_jsonb(d) || jsonb_build_object(
                   'status', 'succeeded', 'revision', d.revision + 1, 'lease_expires_at', null,
                   'result', i.value -> 'result',
                   'finished_at', greatest(ts, d.started_at, d.created_at),
                   'updated_at', greatest(ts, d.updated_at))), 'running'),
                 case when d.traceparent is null then null else jsonb_build_object('traceparent', d.traceparent) end
            from deleted d
            join jsonb_array_elements(p_items) i
              on (i.value ->> 'id')::uuid = d.id and (i.value ->> 'revision')::integer = d.revision
           where relay_topic is not null)
      select coalesce(array_agg(d.id), '{}'), coalesce(array_agg(d.revision), '{}') into gone, gone_revisions from deleted d;
      if round = 1 and cardinality(gone) < cardinality(ids) then
        raise sqlstate 'TF0UN';
      end if;
      return query select * from unnest(gone, gone_revisions);
      return;
    exception when sqlstate 'TF0UN' then
      null;
    end;
  end loop;
end $$;

-- 6. The other statements of a run, fenced the same way.
drop function taskfiber.retry_task(text, uuid, jsonb, bigint);
create function taskfiber.retry_task(p_worker text, p_id uuid, p_revision integer, p_error jsonb, p_delay_ms bigint)
returns setof taskfiber.tasks language sql as $$
  update taskfiber.tasks
     set status = case when attempt >= max_attempts then 'failed'::taskfiber.task_status
                       else 'retrying'::taskfiber.task_status end,
         last_error = p_error,
         run_at = case when attempt >= max_attempts then run_at
                       else clock_timestamp() + p_delay_ms * interval '1 millisecond' end
   where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
  returning *
$$;

drop function taskfiber.fail_task(text, uuid, jsonb);
create function taskfiber.fail_task(p_worker text, p_id uuid, p_revision integer, p_error jsonb)
returns setof taskfiber.tasks language sql as $$
  update taskfiber.tasks set status = 'failed', last_error = p_error
   where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
  returning *
$$;

-- The handler gave up (it failed with TaskCancelled): cancelled, if this claim
-- still holds the task. `cancel_tasks` stays for cancellations from outside a run.
create function taskfiber.cancel_claimed(p_worker text, p_id uuid, p_revision integer, p_reason text)
returns boolean language sql as $$
  with u as (
    update taskfiber.tasks
       set status = 'cancelled',
           last_error = jsonb_build_object('tag', 'TaskCancelled', 'message', p_reason, 'classification', 'cancelled')
     where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
    returning 1)
  select exists (select from u)
$$;

drop function taskfiber.record_progress(text, uuid, jsonb, jsonb);
create function taskfiber.record_progress(p_worker text, p_id uuid, p_revision integer, p_progress jsonb, p_checkpoint jsonb)
returns boolean language sql as $$
  with u as (
    update taskfiber.tasks
       set progress = coalesce(p_progress, progress), checkpoint = coalesce(p_checkpoint, checkpoint)
     where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
    returning 1)
  select exists (select from u)
$$;

-- A prefetched task handed back once (section 2) has its start recorded before its
-- handler runs.
create function taskfiber.record_start(p_worker text, p_id uuid, p_revision integer)
returns boolean language sql as $$
  with u as (
    update taskfiber.tasks set handler_started = true
     where id = p_id and revision = p_revision and status = 'running' and worker_id = p_worker
    returning 1)
  select exists (select from u)
$$;

-- Many claims at once (heartbeat, shutdown), locked in id order as before (the sort
-- is above the join, whatever its plan). Reached through the primary key: from
-- PostgreSQL 18 a SQL function's statements go through the plan cache, whose custom
-- plans know the arrays' real size (1,000 claims with PREFETCH), and a hash join
-- over a sequential scan of the table became a choice.
drop function taskfiber.release_tasks(text, uuid[]);
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
-- ones have started (`p_started`); returns the ids still held.
drop function taskfiber.extend_leases(text, bigint, uuid[]);
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

-- 7. The reaper: expired leases of tasks that started → retrying (or failed when out
-- of attempts), as before; of tasks whose start was never recorded → queued, attempt
-- given back, at their old place in the queue (section 2).
create or replace function taskfiber.reap_expired(p_limit integer)
returns setof taskfiber.tasks language sql set jit = off as $$
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
         run_at = case when t.handler_started then now() else t.run_at end,
         last_error = case when not t.handler_started then t.last_error
                      else jsonb_build_object('tag', 'LeaseExpired', 'classification', 'transient',
                        'message', format('lease of worker %s expired at %s', t.worker_id, t.lease_expires_at)) end
    from expired
   where t.id = expired.id
  returning t.*
$$;

-- 8. Workers: which queues and task types each running instance serves, renewed by
-- its heartbeat (the database clock stamps it). A task due in a queue, or of a type,
-- that no live worker serves waits for ever without this; with it, supervisors and
-- `taskfiber status` say so. Rows of workers unseen for a day are removed.
create table taskfiber.workers (
  id          text primary key,
  queues      text[] not null,
  types       text[] not null,
  started_at  timestamptz not null default clock_timestamp(),
  seen_at     timestamptz not null default clock_timestamp()
);

create function taskfiber.worker_seen(p_id text, p_queues text[], p_types text[])
returns void language sql as $$
  delete from taskfiber.workers where seen_at < clock_timestamp() - interval '1 day';
  insert into taskfiber.workers (id, queues, types) values (p_id, p_queues, p_types)
    on conflict (id) do update set queues = excluded.queues, types = excluded.types, seen_at = clock_timestamp();
$$;

-- Due tasks that no worker seen within p_seen_within_ms serves, by queue and type.
-- Grouped first (one pass over the due tasks), then each group checked.
create function taskfiber.unserved_tasks(p_seen_within_ms bigint)
returns table (queue text, type text, count bigint, oldest_run_at timestamptz) language sql as $$
  select g.queue, g.type, g.count, g.oldest_run_at
    from (select t.queue, t.type, count(*) as count, min(t.run_at) as oldest_run_at
            from taskfiber.tasks t
           where t.status in ('queued', 'retrying') and t.run_at <= now()
           group by t.queue, t.type) g
   where not exists (
     select from taskfiber.workers w
      where w.seen_at > clock_timestamp() - p_seen_within_ms * interval '1 millisecond'
        and g.queue = any(w.queues) and g.type = any(w.types))
   order by g.oldest_run_at
$$;
