-- Workers say which queues and task types they serve (taskfiber.workers), so that a
-- task no live worker serves is reported instead of waiting unnoticed.

-- A worker's heartbeat: its row renewed, the database clock stamping it. Rows of
-- workers unseen for a day are removed.
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
