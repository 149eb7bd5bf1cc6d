-- taskfiber 002: the database enforces the task state machine and the time order.
--
-- Every write to taskfiber.tasks, from taskfiber's own functions or from raw SQL,
-- passes these triggers:
--  * a status change must be an allowed move (the table below equals
--    `allowedTransitions` in src/domain/TaskStatus.ts; a test compares them), and a
--    failed task goes back to queued only through taskfiber.replay_task;
--  * timestamps come from the database clock (clock_timestamp(), not the
--    transaction's start), so created_at <= started_at <= finished_at holds even
--    when a task starts and finishes within one millisecond, and the CHECK
--    constraints in 001 reject anything else;
--  * attempt counts runs started, so only a move into running raises it;
--  * each status change appends its task_events row in the same statement, a
--    failure appends its dead letter, a move back to queued wakes dispatchers.
-- Error code TF001 marks a forbidden move (src/store/DatabaseError.ts maps it).

create function taskfiber.transition_allowed(
  from_status taskfiber.task_status, to_status taskfiber.task_status
) returns boolean language sql immutable parallel safe as $$
  select (from_status, to_status) in (
    ('queued',   'running'),   ('queued',   'cancelled'),
    ('running',  'succeeded'), ('running',  'retrying'), ('running', 'failed'),
    ('running',  'cancelled'), ('running',  'queued'),
    ('retrying', 'running'),   ('retrying', 'cancelled'),
    ('failed',   'queued'))
$$;

create function taskfiber.tasks_before_write() returns trigger language plpgsql as $$
declare
  ts timestamptz := clock_timestamp();
begin
  if tg_op = 'INSERT' then
    if new.status <> 'queued' then
      raise exception 'a task is created queued, not %', new.status
        using errcode = 'TF001', table = 'tasks', column = 'status';
    end if;
    new.created_at := ts;
    new.updated_at := ts;
    new.started_at := null;
    new.finished_at := null;
    new.attempt := 0;
    new.revision := 1;
    new.lease_expires_at := null;
    return new;
  end if;

  if new.id <> old.id then
    raise exception 'a task id never changes (task %)', old.id
      using errcode = 'TF001', table = 'tasks', column = 'id';
  end if;
  -- Outside a move, the bookkeeping columns keep their values.
  new.created_at := old.created_at;
  new.updated_at := greatest(ts, old.updated_at);
  new.attempt := old.attempt;
  new.revision := old.revision;
  new.started_at := old.started_at;
  new.finished_at := old.finished_at;

  if new.status is distinct from old.status then
    if not taskfiber.transition_allowed(old.status, new.status) then
      raise exception 'forbidden task transition % -> % (task %)', old.status, new.status, old.id
        using errcode = 'TF001', table = 'tasks', column = 'status',
              hint = 'allowed: queued->running|cancelled, running->succeeded|retrying|failed|cancelled|queued, retrying->running|cancelled, failed->queued (replay only)';
    end if;
    if old.status = 'failed' and current_setting('taskfiber.replay', true) is distinct from 'on' then
      raise exception 'a failed task returns to queued only by dead-letter replay (task %)', old.id
        using errcode = 'TF001', table = 'tasks', column = 'status',
              hint = 'call taskfiber.replay_task(id)';
    end if;
    new.revision := old.revision + 1;
    if new.status = 'running' then
      new.attempt := old.attempt + 1;
      -- greatest(): a clock stepped back by NTP must not break the order.
      new.started_at := greatest(ts, old.created_at, old.started_at);
      new.finished_at := null;
    else
      new.lease_expires_at := null;
    end if;
    if new.status in ('succeeded', 'failed', 'cancelled') then
      new.finished_at := greatest(ts, new.started_at, new.created_at);
    elsif new.status = 'queued' then
      -- release (graceful shutdown): the run is not counted; replay: a fresh start.
      new.attempt := case when old.status = 'failed' then 0 else greatest(old.attempt - 1, 0) end;
      new.finished_at := null;
    end if;
  end if;
  return new;
end $$;

create trigger tasks_before_write before insert or update on taskfiber.tasks
  for each row execute function taskfiber.tasks_before_write();

-- Statement-level: one insert of events per statement, however many tasks it moved.
create function taskfiber.tasks_after_insert() returns trigger language plpgsql as $$
begin
  insert into taskfiber.task_events (task_id, seq, from_status, to_status, attempt, error, worker_id, at)
    select n.id, n.revision, null, n.status, n.attempt, null, null, n.created_at from new_rows n;
  insert into taskfiber.outbox (topic, key, payload, headers)
    select s.outbox_topic, n.id::text, taskfiber.status_event(n, null), taskfiber.trace_headers(n)
    from new_rows n, taskfiber.settings s where s.outbox_topic is not null;
  perform pg_notify('taskfiber_tasks', q.queue) from (select distinct queue from new_rows) q;
  return null;
end $$;

create function taskfiber.tasks_after_update() returns trigger language plpgsql as $$
begin
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

create function taskfiber.status_event(t taskfiber.tasks, from_status taskfiber.task_status)
returns jsonb language sql stable as $$
  select jsonb_build_object('taskId', t.id, 'queue', t.queue, 'type', t.type,
    'from', from_status, 'to', t.status, 'attempt', t.attempt, 'at', t.updated_at,
    'error', t.last_error, 'result', case when t.status = 'succeeded' then t.result end)
$$;

create function taskfiber.trace_headers(t taskfiber.tasks) returns jsonb language sql stable as $$
  select case when t.traceparent is null then null else jsonb_build_object('traceparent', t.traceparent) end
$$;

create trigger tasks_after_insert after insert on taskfiber.tasks
  referencing new table as new_rows
  for each statement execute function taskfiber.tasks_after_insert();

create trigger tasks_after_update after update on taskfiber.tasks
  referencing old table as old_rows new table as new_rows
  for each statement execute function taskfiber.tasks_after_update();

-- task_events is append-only: no UPDATE, and no DELETE but the cascade from deleting
-- its task (pruning). A cascade runs inside the foreign key's own trigger, so there
-- pg_trigger_depth() is 2; a direct statement sees 1.
create function taskfiber.task_events_append_only() returns trigger language plpgsql as $$
begin
  if tg_op = 'UPDATE' or pg_trigger_depth() < 2 then
    raise exception 'task_events is append-only: % refused', lower(tg_op)
      using errcode = 'TF002', table = 'task_events',
            hint = 'history goes when its task is deleted';
  end if;
  return old;
end $$;

create trigger task_events_append_only before update or delete on taskfiber.task_events
  for each row execute function taskfiber.task_events_append_only();
