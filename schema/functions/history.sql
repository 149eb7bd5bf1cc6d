-- What every statement that writes tasks leaves behind, written by statement-level
-- triggers in the same statement (one insert per statement, however many tasks it
-- moved): each status change appends its task_events row, a failure its dead
-- letter, a move back to queued wakes dispatchers (NOTIFY), and with the outbox on,
-- each status change is relayed. History goes with its task and is otherwise
-- append-only. A hot-path statement (state_machine.sql) is checked here as a whole.
--
-- jit = off on every function that writes tasks: PL/pgSQL caches its plans for the
-- session, and a plan made once for a large statement (a claim or cancel of a few
-- thousand tasks, whose transition tables these triggers join) costs more than
-- jit_above_cost, so it carries JIT, and every later call that reuses it compiles
-- again: after one claim of 5,000 tasks, every status change of that connection
-- took 370 ms instead of 0.2 ms (PostgreSQL 15). Their statements are short index
-- work; compilation never pays here.

-- A task's status event, as the outbox relays it.
create function taskfiber.status_event(t taskfiber.tasks, from_status taskfiber.task_status)
returns jsonb language sql stable as $$
  select jsonb_build_object('taskId', t.id, 'queue', t.queue, 'type', t.type,
    'from', from_status, 'to', t.status, 'attempt', t.attempt, 'at', t.updated_at,
    'error', t.last_error, 'result', case when t.status = 'succeeded' then t.result end)
$$;

-- A status event's trace headers: an outcome's (succeeded, retrying, failed,
-- cancelled) follow its run's span when the run had one, the others the enqueue's.
create function taskfiber.trace_headers(t taskfiber.tasks) returns jsonb language sql stable as $$
  select case
    when t.run_traceparent is not null and t.status in ('succeeded', 'retrying', 'failed', 'cancelled')
      then jsonb_build_object('traceparent', t.run_traceparent)
    when t.traceparent is null then null
    else jsonb_build_object('traceparent', t.traceparent) end
$$;

-- The hot path cannot be forged: any client can raise `taskfiber.hot_path`, and a
-- raw `update … set status = 'running'` under it would move a cancelled task to
-- running. So a hot-path insert must make fresh queued tasks (each row checked), and
-- a hot-path update must be one of the two hot moves for every row: all its tasks
-- queued or retrying before and running after (a claim), or all running before and
-- succeeded after (a completion), with the revisions raised by one a row and the
-- attempts by one a row for a claim, by none for a completion (sums over the
-- statement).
--
-- Measured (claim of 500 from 20,000, one backend, 60 rounds, µs a claimed task):
-- the same checks per row, on a join of the transition tables, 11.2 and 11.9
-- against 8.9 without; one pass over each transition table with plain sums 8.2–8.8
-- against 7.6–9.2; sums weighted by a hash of each id (so that no row's count can
-- make up for another's) 8.6–9.0. Plain sums refuse every move the state machine forbids and
-- every miscount a mistaken statement makes; the weights would only stop a
-- deliberate forger, who, owning the table, can as well disable its triggers.
create function taskfiber.refuse_hot_write(p_id uuid, p_from taskfiber.task_status, p_to taskfiber.task_status)
returns boolean language plpgsql as $$
begin
  raise exception 'forbidden task write under taskfiber.hot_path: % -> % (task %)', p_from, p_to, p_id
    using errcode = 'TF001', table = 'tasks', column = 'status',
          hint = 'taskfiber.hot_path is for taskfiber''s own enqueue, claim and completion; other writes pass the state machine';
end $$;

-- A task that leaves on success (remove_on_complete) has no `created` event.
create function taskfiber.tasks_after_insert() returns trigger language plpgsql set jit = off as $$
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

create trigger tasks_after_insert after insert on taskfiber.tasks
  referencing new table as new_rows
  for each statement execute function taskfiber.tasks_after_insert();

-- The outbox inserts run only while the outbox is on: the planner put the one-row
-- settings table on the inside, so the join of the transition tables ran in full
-- before the empty settings row ended it (0.25 ms of a 6.6 ms claim of 500).
--
-- enable_nestloop = off: the planner takes a transition table's size from the rows
-- it holds when the query is first planned, and PL/pgSQL keeps that plan for the
-- session. After a connection's first claim of one task, the join of new_rows to
-- old_rows was a nested loop, and every later claim of 500 on that connection
-- compared 500 × 500 rows: draining 20,000 tasks took 4.7–7.4 s instead of
-- 1.4–1.7 s. Hash joins are linear at every size and cost nothing measurable for
-- one row (re-planning every call with EXECUTE would cost ~0.1 ms a statement).
create function taskfiber.tasks_after_update() returns trigger language plpgsql
set jit = off
set enable_nestloop = off
as $$
declare
  o_rows bigint; o_claimable bigint; o_running bigint; o_revisions bigint; o_attempts bigint;
  n_running bigint; n_succeeded bigint; n_revisions bigint; n_attempts bigint;
begin
  -- The claim and the completion: every row moves, to running or succeeded, from a
  -- status that is not failed, so of the statements below only the history and the
  -- outbox apply (skipping the others saved a third of the trigger). No event for a
  -- task that leaves on success.
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

create trigger tasks_after_update after update on taskfiber.tasks
  referencing old table as old_rows new table as new_rows
  for each statement execute function taskfiber.tasks_after_update();

-- Deleting tasks (pruning, the completion of removeOnComplete tasks) deletes their
-- history, one statement per statement. Skipped when no deleted task can have any
-- (a removeOnComplete task never marked has_events): the delete of task_events cost
-- 1.6–3.4 µs a deleted task even when it found nothing.
create function taskfiber.tasks_after_delete() returns trigger language plpgsql set jit = off as $$
begin
  if exists (select from old_rows o where o.has_events or not o.remove_on_complete) then
    delete from taskfiber.task_events e using old_rows o where e.task_id = o.id;
  end if;
  return null;
end $$;

create trigger tasks_after_delete after delete on taskfiber.tasks
  referencing old table as old_rows
  for each statement execute function taskfiber.tasks_after_delete();

-- task_events is append-only: no UPDATE, and no DELETE but the one of
-- tasks_after_delete, which runs inside a trigger, so there pg_trigger_depth() is 2;
-- a direct statement sees 1.
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
