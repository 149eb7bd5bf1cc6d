-- The outbox relay's wake-up: a statement that wrote status events (only while
-- the outbox is on, taskfiber.settings.outbox_topic set) notifies once; PostgreSQL
-- folds the notifications of one transaction into one. The relay listens, and
-- checks again every 30 s in case one was missed while it reconnected.
create function taskfiber.outbox_notify() returns trigger language plpgsql as $$
begin
  perform pg_notify('taskfiber_outbox', '');
  return null;
end $$;

create trigger outbox_after_insert after insert on taskfiber.outbox
  for each statement execute function taskfiber.outbox_notify();

-- One round of the relay, its first half: the oldest unpublished events, locked
-- until the round's transaction ends. Only one relay at a time (an advisory lock
-- of the transaction): several instances relaying at once would publish one task's
-- events out of order. Nothing when another relay holds the lock.
create function taskfiber.outbox_take(p_limit integer)
returns setof taskfiber.outbox language plpgsql as $$
begin
  if not pg_try_advisory_xact_lock(hashtext('taskfiber.outbox_relay')) then
    return;
  end if;
  return query
    select * from taskfiber.outbox o
     where o.published_at is null
     order by o.id
     limit p_limit
       for update;
end $$;

-- Its second half, after the broker acknowledged them: published. Rows published
-- more than p_keep_ms ago are removed; the relay goes in id order, so they are all
-- below the oldest unpublished id (a range of the primary key, not a scan).
create function taskfiber.outbox_published(p_ids bigint[], p_keep_ms bigint)
returns void language sql as $$
  update taskfiber.outbox set published_at = clock_timestamp() where id = any(p_ids);
  delete from taskfiber.outbox
   where id < coalesce((select min(u.id) from taskfiber.outbox u where u.published_at is null), 9223372036854775807)
     and published_at < clock_timestamp() - make_interval(secs => p_keep_ms / 1000.0);
$$;
