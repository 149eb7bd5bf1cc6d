-- The completion: success for many claims at once. p_items: [{id, revision, result,
-- remove, run_traceparent?}] (run_traceparent: the run's span, for its status event),
-- each naming its claim (fencing, run.sql); only claims that still hold
-- their task, running for this worker, complete it. Returns those claims (id and the
-- claim's revision): a batch may name a task twice, its stale claim and its current
-- one.
--
-- Tasks that leave on success (remove_on_complete) are deleted, with no history of
-- their happy path. Measured (one backend claiming 500 and completing them, each
-- statement committed, 20,000 queued; µs a task): history kept 61–73; the row
-- deleted after its history was written 43–53; deleted with no history 33–42.
--
-- Two ways. The short one, for a batch of tasks that all leave on success: one
-- statement finds and deletes them, instead of a first one that locks them (a WAL
-- record per row of its own) and a second that deletes them by address (15.8 µs a
-- task against 17.6 for the completion). It is tried only when the caller marks every item
-- `"remove": true` (the worker knows from its claim; the mark only chooses the way,
-- the delete checks remove_on_complete itself), in a subtransaction undone (its row
-- locks released) when it did not take the whole batch. The general way follows
-- then: every task of the batch locked in id order, the kept ones updated by
-- address, and the same delete, of rows already held. A task the heartbeat renewed
-- meanwhile is found either way (a plain delete re-checks its WHERE on the newest
-- version of a row; a lock takes the newest version).
--
-- Lock order: statements that lock several running tasks of a worker (this one, the
-- heartbeat, release, cancel) take the locks in id order; in arbitrary order the
-- completion and the heartbeat deadlocked (40P01 in the drain benchmark). The
-- (id, revision) pairs, sorted, are joined to the tasks through the primary key (a
-- nested loop over the sorted array reaches the rows in id order). Measured against
-- a `revision = revs[array_position(ids, id)]` filter: the array search is linear,
-- ~1 µs a task for batches of 500; the join costs nothing measurable.
--
-- Crash before the commit: nothing happened, the tasks are running with their leases
-- (retried by the reaper). After: gone or updated, with the history deleted in the
-- same transaction (history.sql).
create function taskfiber.complete_tasks(p_worker text, p_items jsonb)
returns table (id uuid, revision integer) language plpgsql
-- random_page_cost: TID fetches of rows just locked are in shared buffers (claim.sql).
-- jit = off: see history.sql. No bitmap or sequential scans: they would reach the
-- rows in physical order, not id order.
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
  -- Read once: the relay below is then skipped whole when the outbox is off.
  relay_topic text := (select s.outbox_topic from taskfiber.settings s);
begin
  -- Every (id, revision) pair, in id order (one sort; both arrays come from the one
  -- sorted row stream, so they stay paired), through arrays so that the lookup is an
  -- index scan on the primary key: a join against jsonb_array_elements() has no
  -- statistics, and PostgreSQL chose a nested loop re-parsing the JSON per row (31 ms
  -- for 100 tasks). A stale claim and the current one of the same task may share a
  -- batch: only the current one completes it, and the short way, finding fewer tasks
  -- than pairs, gives way to the general one. Measured: a distinct pass and two
  -- ordered aggregates cost 1.25 µs a task for 500 items, this 0.76.
  select coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.revision), '{}')
    into ids, revs
    from (select (i.value ->> 'id')::uuid as id, (i.value ->> 'revision')::integer as revision
            from jsonb_array_elements(p_items) i order by 1, 2) c;
  -- Round 1: the delete alone. Round 2: lock all, update the kept ones, then the delete.
  for round in (case when all_removed then 1 else 2 end) .. 2 loop
    if round = 2 then
      -- Two statements on purpose: a row updated by someone else (the heartbeat)
      -- after this call's snapshot is locked in its newest version, whose address
      -- only a later snapshot can see; in one statement the update silently missed
      -- such rows (seen in the scale test).
      select coalesce(array_agg(l.ctid) filter (where not l.remove_on_complete), '{}'),
             count(*) filter (where l.remove_on_complete)
        into keep, removed from (
        select x.ctid, x.remove_on_complete
          from unnest(ids, revs) as c(id, revision)
          join taskfiber.tasks x on x.id = c.id and x.revision = c.revision
         where x.status = 'running' and x.worker_id = p_worker
         order by x.id for update of x) l;
      -- Each statement only with rows: a statement fires the statement triggers even
      -- for none.
      if cardinality(keep) > 0 then
        -- running → succeeded, as tasks_before_write would write it (state_machine.sql).
        perform set_config('taskfiber.hot_path', 'on', true);
        return query
          update taskfiber.tasks t
             set status = 'succeeded', result = i.value -> 'result', run_traceparent = i.value ->> 'run_traceparent',
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
      -- The status is compared as text, which keeps tasks_running_idx out: with
      -- statistics taken while nothing ran, the planner read that whole index (every
      -- running task of every worker, dead entries included), 2.4 ms instead of
      -- 0.55 for a batch of 10 with 5,000 others running.
      with deleted as (
        delete from taskfiber.tasks t
         using unnest(ids, revs) as c(id, revision)
         where t.id = c.id and t.revision = c.revision
           and t.status::text = 'running' and t.worker_id = p_worker and t.remove_on_complete
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
                 case when coalesce(i.value ->> 'run_traceparent', d.traceparent) is null then null
                      else jsonb_build_object('traceparent', coalesce(i.value ->> 'run_traceparent', d.traceparent)) end
            from deleted d
            join jsonb_array_elements(p_items) i
              on (i.value ->> 'id')::uuid = d.id and (i.value ->> 'revision')::integer = d.revision
           where relay_topic is not null)
      select coalesce(array_agg(d.id), '{}'), coalesce(array_agg(d.revision), '{}') into gone, gone_revisions from deleted d;
      if round = 1 and cardinality(gone) < cardinality(ids) then
        raise sqlstate 'TF0UN'; -- undone: not the whole batch
      end if;
      return query select * from unnest(gone, gone_revisions);
      return;
    exception when sqlstate 'TF0UN' then
      null; -- on to round 2
    end;
  end loop;
end $$;
