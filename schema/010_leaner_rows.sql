-- taskfiber 010: less work per task in PostgreSQL: one index fewer, and tasks that
-- leave on success deleted without a separate lock and without a history probe.
--
-- Measured by alternating a one-backend loop (claim 500, complete them, each
-- committed) between two databases holding the same 20,000 tasks, one migrated
-- to 009 and one to 010 (PostgreSQL 15, 2 cores; the backend's own CPU per task,
-- two runs each):
--   removeOnComplete tasks   36.5 → 30.5 µs, 47.5 → 41.0 (claim 26.1 → 22.8,
--                            complete 17.2 → 14.3 µs of wall time in the first)
--   kept tasks               74.0 → 67.5 µs, 77.5 → 71.0
-- Each piece alone, in the same loop (removeOnComplete tasks): without the index,
-- 38.5 → 33.0 and 40.5 → 36.5; the direct delete, completion 17.6 → 15.8 and
-- 18.8 → 15.5 µs; the skipped history delete, completion 14.8 → 13.2 µs.

-- 1. The created_at index served only TaskStore.list's order, yet every task paid
-- for it three times: its insert, its claim and (kept tasks) its completion each
-- add an entry, as a status change is never a HOT update. list now pages in id
-- order, through the primary key: creation order for the ids taskfiber makes
-- (UUIDv7, to the millisecond of the producer's clock).
drop index taskfiber.tasks_created_idx;

-- 2. Whether a task may have rows in task_events. Only removeOnComplete tasks
-- need it (a kept task always has its `created` event): their hot-path moves
-- (enqueue, claim, completion) write no history, but any other status change
-- does, and it passes tasks_before_write, which a hot-path statement skips. So a
-- trigger beside it marks the task on every other write. Tasks that exist when
-- this migration runs count as having history (the column's value for them is
-- true); new ones start without.
alter table taskfiber.tasks add column has_events boolean not null default true;
alter table taskfiber.tasks alter column has_events set default false;

-- Never unmarked: a write that sets it back to false keeps it true.
create function taskfiber.tasks_mark_events() returns trigger language plpgsql set jit = off as $$
begin
  new.has_events := old.has_events or new.status is distinct from old.status;
  return new;
end $$;

create trigger tasks_mark_events before update on taskfiber.tasks
  for each row when (current_setting('taskfiber.hot_path', true) is distinct from 'on')
  execute function taskfiber.tasks_mark_events();

-- 004's history cascade, now skipped when no deleted task can have history (the
-- completion of removeOnComplete tasks on their happy path): its delete of
-- task_events cost 1.6–3.4 µs per deleted task even when it found nothing.
create or replace function taskfiber.tasks_after_delete() returns trigger language plpgsql set jit = off as $$
begin
  if exists (select from old_rows o where o.has_events or not o.remove_on_complete) then
    delete from taskfiber.task_events e using old_rows o where e.task_id = o.id;
  end if;
  return null;
end $$;

-- 3. 007's completion, with a shorter way for a batch of tasks that all leave on
-- success: one statement that finds and deletes them, instead of a first one that
-- locks them (a WAL record per row of its own) and a second that deletes them by
-- address.
--
-- Lock order: that delete reaches its rows through the primary key, in id order
-- (a b-tree scan of `id = any(sorted ids)`), the order every other statement
-- that locks several running tasks uses (the heartbeat, cancel, release), so none
-- of them can deadlock with it. Nothing else may serve it: bitmap and sequential
-- scans (physical order) are off for this function, and the status is compared
-- as text, which keeps the partial index of running tasks (lease order; the
-- planner took it) out.
--
-- A batch that also holds kept tasks (or tasks no longer this worker's) cannot be
-- done that way: the kept ones would be locked after the deleted ones, out of id
-- order. So the short way is tried only when the caller marks every item
-- `"remove": true` (the worker knows from its claim; the mark only chooses the
-- way, the delete checks remove_on_complete itself), in a subtransaction that is
-- undone (its row locks released) when it did not take the whole batch. 007's
-- way follows then: every task of the batch locked in id order, the kept ones
-- updated by address, and the same delete, of rows already held. A task the
-- heartbeat renewed meanwhile is found either way (a plain delete re-checks its
-- WHERE on the newest version of a row; a lock takes the newest version).
--
-- Crash before the commit: nothing happened, the tasks are running with their
-- leases (retried by the reaper, as before). After: gone or updated, with the
-- history deleted in the same transaction (tasks_after_delete).
create or replace function taskfiber.complete_tasks(p_worker text, p_items jsonb)
returns setof uuid language plpgsql
set random_page_cost = 1.1 set jit = off set enable_bitmapscan = off set enable_seqscan = off as $$
declare
  ids uuid[] := array(select distinct (i.value ->> 'id')::uuid from jsonb_array_elements(p_items) i order by 1);
  all_removed boolean := not exists (
    select from jsonb_array_elements(p_items) i where (i.value -> 'remove') is distinct from 'true'::jsonb);
  gone uuid[];
  keep tid[];
  removed bigint;
  ts timestamptz := clock_timestamp();
  -- Read once: the relay below is then skipped whole when the outbox is off.
  relay_topic text := (select s.outbox_topic from taskfiber.settings s);
begin
  -- Round 1: the delete alone. Round 2: 007's lock and update, then the delete.
  for round in (case when all_removed then 1 else 2 end) .. 2 loop
    if round = 2 then
      select coalesce(array_agg(l.ctid) filter (where not l.remove_on_complete), '{}'),
             count(*) filter (where l.remove_on_complete)
        into keep, removed from (
        select x.ctid, x.remove_on_complete from taskfiber.tasks x
         where x.id = any(ids) and x.status = 'running' and x.worker_id = p_worker
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
      if removed = 0 then
        return;
      end if;
    end if;
    begin
      with deleted as (
        delete from taskfiber.tasks t
         where t.id = any(ids) and t.status::text = 'running' and t.worker_id = p_worker and t.remove_on_complete
        returning t.*),
      relayed as (
        -- The success as the update above would have written it, for the relay.
        insert into taskfiber.outbox (topic, key, payload, headers)
          select relay_topic, d.id::text,
                 taskfiber.status_event(jsonb_populate_record(null::taskfiber.tasks, to_jsonb(d) || jsonb_build_object(
                   'status', 'succeeded', 'revision', d.revision + 1, 'lease_expires_at', null,
                   'result', i.value -> 'result',
                   'finished_at', greatest(ts, d.started_at, d.created_at),
                   'updated_at', greatest(ts, d.updated_at))), 'running'),
                 case when d.traceparent is null then null else jsonb_build_object('traceparent', d.traceparent) end
            from deleted d
            join jsonb_array_elements(p_items) i on (i.value ->> 'id')::uuid = d.id
           where relay_topic is not null)
      select coalesce(array_agg(d.id), '{}') into gone from deleted d;
      if round = 1 and cardinality(gone) < cardinality(ids) then
        raise sqlstate 'TF0UN'; -- undone: not the whole batch
      end if;
      return query select unnest(gone);
      return;
    exception when sqlstate 'TF0UN' then
      null; -- on to round 2
    end;
  end loop;
end $$;
