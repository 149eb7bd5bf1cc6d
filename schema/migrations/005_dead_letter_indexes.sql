-- The operator's reads of dead letters (src/store/DeadLetters.ts):
--
-- A page of one task type's letters, newest first (`taskfiber dlq list --type`):
-- dead_letters_created_idx alone walks every newer letter of the other types to
-- fill the page, the whole table for a type that failed rarely.
create index dead_letters_type_idx on taskfiber.dead_letters (type, created_at, id);

-- The failed tasks a replay of them all still has to replay (`taskfiber dlq
-- replay --all`): the letters of tasks, not yet replayed, in (type, created_at, id)
-- order, which serves a replay of one type (the prefix) and of all (the whole
-- index). A replay sets replayed_at (functions/replay.sql), so the index holds only
-- the work left, however many letters were ever written.
create index dead_letters_unreplayed_idx on taskfiber.dead_letters (type, created_at, id)
  where source = 'task' and replayed_at is null;
