-- Where an undecodable Kafka message came from, so that its dead letter names it
-- and a redelivery of the same message (its offset committed after the batch's
-- transaction, and a crash in between) finds its dead letter instead of writing a
-- second one. The message's timestamp is part of its identity: a topic deleted and
-- made again starts its offsets over, and its messages are other messages.
alter table taskfiber.dead_letters
  add column topic text,
  add column kafka_partition integer,
  add column kafka_offset bigint,
  add column kafka_timestamp bigint;
create unique index dead_letters_kafka_idx on taskfiber.dead_letters (topic, kafka_partition, kafka_offset, kafka_timestamp)
  where topic is not null;
