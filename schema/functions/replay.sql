-- Dead-letter replay: the only way from failed back to queued (tasks_before_write
-- allows it only while taskfiber.replay is on). Attempts start over; the checkpoint
-- is kept so the handler can resume.
create function taskfiber.replay_task(p_id uuid)
returns setof taskfiber.tasks language plpgsql as $$
begin
  perform set_config('taskfiber.replay', 'on', true);
  return query
    update taskfiber.tasks set status = 'queued', run_at = now(), result = null
     where id = p_id and status = 'failed'
    returning *;
  perform set_config('taskfiber.replay', 'off', true);
  update taskfiber.dead_letters set replayed_at = clock_timestamp()
   where task_id = p_id and replayed_at is null;
end $$;
