-- taskfiber 007: tasks that leave on success (BullMQ's `removeOnComplete`,
-- graphile-worker's behaviour for every job).
--
-- A task enqueued with remove_on_complete keeps no history of its happy path: no
-- `created`, `running` or `succeeded` event, and the statement that completes it
-- deletes its row. Everything off the happy path is recorded as for any task: a
-- retry, a failure, a cancellation or a reaped lease appends its event, a failure
-- leaves its row `failed` and its dead letter, and a success after a retry deletes
-- the task with the events it had. With the outbox on, every status change is
-- relayed as for any task, the success included.
--
-- Measured (PostgreSQL 15, 2 cores; one backend claiming 500 and completing them,
-- each statement committed, 20,000 queued), µs per task:
--   claim + complete, history kept (every task before 007)       61–73
--   claim + complete as a delete, history written then deleted   43–53
--   claim + complete as a delete, no history                     33–42
-- so a removed task skips its history rows too, not only its last update.

alter table taskfiber.tasks add column remove_on_complete boolean not null default false;

-- 004's enqueue, with one more column read from the spec.
create or replace function taskfiber.enqueue(p_specs jsonb)
returns table (ord integer, id uuid, created boolean) language plpgsql set jit = off as $$
declare
  inserted uuid[];
begin
  -- A new task, as tasks_before_write would write it: queued, attempt 0, revision
  -- 1, created now by the database clock.
  perform set_config('taskfiber.hot_path', 'on', true);
  with ins as (
    insert into taskfiber.tasks
      (id, queue, type, payload, priority, max_attempts, run_at, dedupe_key, traceparent,
       remove_on_complete, status, attempt, revision, created_at, updated_at)
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
           coalesce((s ->> 'remove_on_complete')::boolean, false),
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

-- 002's creation trigger: no `created` event for a task that leaves on success.
create or replace function taskfiber.tasks_after_insert() returns trigger language plpgsql set jit = off as $$
begin
  insert into taskfiber.task_events (task_id, seq, from_status, to_status, attempt, error, worker_id, at)
    select n.id, n.revision, null, n.status, n.attempt, null, null, n.created_at
      from new_rows n where not n.remove_on_complete;
  insert into taskfiber.outbox (topic, key, payload, headers)
    select s.outbox_topic, n.id::text, taskfiber.status_event(n, null), taskfiber.trace_headers(n)
    from new_rows n, taskfiber.settings s where s.outbox_topic is not null;
  perform pg_notify('taskfiber_tasks', q.queue) from (select distinct queue from new_rows) q;
  return null;
end $$;

-- 005's status-change trigger: on the hot path (the claim; the completion of the
-- tasks it updates), no event for a task that leaves on success. Off the hot path
-- every change is recorded, whatever the task.
create or replace function taskfiber.tasks_after_update() returns trigger language plpgsql
set jit = off
set enable_nestloop = off -- see 006
as $$
begin
  if current_setting('taskfiber.hot_path', true) = 'on' then
    insert into taskfiber.task_events (task_id, seq, from_status, to_status, attempt, error, worker_id, at)
      select n.id, n.revision, o.status, n.status, n.attempt, null, n.worker_id, n.updated_at
      from new_rows n join old_rows o on o.id = n.id
      where not n.remove_on_complete;
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

-- 005's completion, which now deletes the tasks that leave on success. Both kinds
-- are locked first, in id order, exactly as before; each statement runs only when
-- it has rows (a statement fires its table's statement triggers even for none).
-- Crash before the commit: nothing happened, the tasks are running with their
-- leases (retried by the reaper, as before). After: updated or gone, with the
-- history deleted in the same transaction (tasks_after_delete).
create or replace function taskfiber.complete_tasks(p_worker text, p_items jsonb)
returns setof uuid language plpgsql set random_page_cost = 1.1 set jit = off as $$
declare
  keep tid[];
  gone tid[];
  ts timestamptz;
begin
  select coalesce(array_agg(l.ctid) filter (where l.status = 'running' and not l.remove_on_complete), '{}'),
         coalesce(array_agg(l.ctid) filter (where l.status = 'running' and l.remove_on_complete), '{}')
    into keep, gone from (
    select x.ctid, x.status, x.remove_on_complete from taskfiber.tasks x
     where x.id = any(array(select (i.value ->> 'id')::uuid from jsonb_array_elements(p_items) i))
       and x.worker_id = p_worker
     order by x.id for update) l;
  if cardinality(keep) > 0 then
    -- running → succeeded, as tasks_before_write would write it.
    perform set_config('taskfiber.hot_path', 'on', true);
    return query
      update taskfiber.tasks t
         set status = 'succeeded', result = i.value -> 'result',
             revision = t.revision + 1, lease_expires_at = null,
             finished_at = greatest(c.ts, t.started_at, t.created_at),
             updated_at = greatest(c.ts, t.updated_at)
        from jsonb_array_elements(p_items) i, (select clock_timestamp() as ts) c
       where t.ctid = any(keep) and t.id = (i.value ->> 'id')::uuid
      returning t.id;
    perform set_config('taskfiber.hot_path', 'off', true);
  end if;
  if cardinality(gone) > 0 then
    ts := clock_timestamp();
    return query
      with deleted as (
        delete from taskfiber.tasks t where t.ctid = any(gone) returning t.*),
      relayed as (
        -- The success as the update above would have written it, for the relay.
        insert into taskfiber.outbox (topic, key, payload, headers)
          select s.outbox_topic, d.id::text,
                 taskfiber.status_event(jsonb_populate_record(null::taskfiber.tasks, to_jsonb(d) || jsonb_build_object(
                   'status', 'succeeded', 'revision', d.revision + 1, 'lease_expires_at', null,
                   'result', i.value -> 'result',
                   'finished_at', greatest(ts, d.started_at, d.created_at),
                   'updated_at', greatest(ts, d.updated_at))), 'running'),
                 case when d.traceparent is null then null else jsonb_build_object('traceparent', d.traceparent) end
            from deleted d
            join jsonb_array_elements(p_items) i on (i.value ->> 'id')::uuid = d.id,
                 taskfiber.settings s
           where s.outbox_topic is not null)
      select d.id from deleted d;
  end if;
end $$;
