-- The database enforces the task state machine and the time order.
--
-- Every write to taskfiber.tasks, from taskfiber's own functions or from raw SQL,
-- passes these row triggers or, on the hot path, the statement triggers' check
-- (history.sql):
--  * a status change must be an allowed move (the table below equals
--    `allowedTransitions` in src/domain/TaskStatus.ts; a test compares them), and a
--    failed task goes back to queued only through taskfiber.replay_task;
--  * timestamps come from the database clock (clock_timestamp(), not the
--    transaction's start), so created_at <= started_at <= finished_at holds even
--    when a task starts and finishes within one millisecond, and the tables' CHECK
--    constraints reject anything else;
--  * attempt counts runs started, so only a move into running raises it.
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

-- The hot path: enqueue, claim and completion write the bookkeeping columns
-- themselves (the rules above, for their moves only) and raise `taskfiber.hot_path`
-- for their statement alone, which skips this per-row PL/pgSQL trigger, ~8 µs a row.
-- Their statements are checked as a whole by the statement triggers instead
-- (history.sql); every other write, raw SQL included, passes this one.
create trigger tasks_before_write before insert or update on taskfiber.tasks
  for each row when (current_setting('taskfiber.hot_path', true) is distinct from 'on')
  execute function taskfiber.tasks_before_write();

-- Marks a task that may have history (tasks.has_events): every status change off the
-- hot path appends an event, and only such a write passes this trigger. Never
-- unmarked: a write that sets it back to false keeps it true. jit = off, as in every
-- function that writes tasks (history.sql says why).
create function taskfiber.tasks_mark_events() returns trigger language plpgsql set jit = off as $$
begin
  new.has_events := old.has_events or new.status is distinct from old.status;
  return new;
end $$;

-- After tasks_before_write (row triggers fire in name order).
create trigger tasks_mark_events before update on taskfiber.tasks
  for each row when (current_setting('taskfiber.hot_path', true) is distinct from 'on')
  execute function taskfiber.tasks_mark_events();
