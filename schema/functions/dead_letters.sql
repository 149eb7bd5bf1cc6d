-- Dead letters of input that never became a task (an undecodable Kafka message):
-- p_letters is a JSON array of {source, task_id, type, reason, error, raw (base64),
-- headers, topic, partition, offset, timestamp}. A letter of a message already
-- recorded (same topic, partition, offset and timestamp: a redelivery) is skipped.
-- Returns how many were new.
create function taskfiber.record_dead_letters(p_letters jsonb)
returns integer language sql as $$
  with ins as (
    insert into taskfiber.dead_letters (source, task_id, type, reason, error, raw, headers, topic, kafka_partition, kafka_offset, kafka_timestamp)
      select l ->> 'source', (l ->> 'task_id')::uuid, l ->> 'type', l ->> 'reason', l -> 'error',
             decode(l ->> 'raw', 'base64'), l -> 'headers',
             l ->> 'topic', (l ->> 'partition')::integer, (l ->> 'offset')::bigint, (l ->> 'timestamp')::bigint
        from jsonb_array_elements(p_letters) with ordinality as e(l, n)
       order by e.n
    on conflict (topic, kafka_partition, kafka_offset, kafka_timestamp) where topic is not null do nothing
    returning 1)
  select count(*)::integer from ins;
$$;
