-- taskfiber's tables, types and indexes. Functions and triggers are in
-- ../functions/, each file their current definition (src/store/Migrations.ts).
--
-- Everything lives in the `taskfiber` schema so that an application can embed
-- taskfiber in its own database without name clashes (as graphile_worker does).
-- Task ids are uuids chosen by the producer (or the database), so no global sequence
-- sits on the enqueue path and tasks can later be sharded by id.

create schema if not exists taskfiber;

-- Values and order equal src/domain/TaskStatus.ts (a test compares them).
create type taskfiber.task_status as enum
  ('queued', 'running', 'succeeded', 'retrying', 'failed', 'cancelled');

create table taskfiber.tasks (
  id                uuid primary key default gen_random_uuid(),
  queue             text not null default 'default'
                      constraint tasks_queue_length check (length(queue) between 1 and 128),
  type              text not null
                      constraint tasks_type_length check (length(type) between 1 and 255),
  payload           jsonb not null default '{}',
  priority          integer not null default 0
                      constraint tasks_priority_range check (priority between -1000 and 1000),
  status            taskfiber.task_status not null default 'queued',
  -- Runs started: 0 while never run, 1 during and after the first run.
  attempt           integer not null default 0
                      constraint tasks_attempt_non_negative check (attempt >= 0),
  max_attempts      integer not null default 25
                      constraint tasks_max_attempts_positive check (max_attempts >= 1),
  run_at            timestamptz not null default now(),
  lease_expires_at  timestamptz,
  worker_id         text,
  progress          jsonb,
  checkpoint        jsonb,
  result            jsonb,
  last_error        jsonb,
  dedupe_key        text
                      constraint tasks_dedupe_key_length check (length(dedupe_key) between 1 and 255),
  -- Status changes so far: the key of the task's next event. A claim raises it and
  -- nothing but the next status change does, so (id, revision) names one claim,
  -- which every statement of a run passes (fencing, functions/run.sql).
  revision          integer not null default 0,
  -- Timestamps are written from the database clock by the triggers
  -- (functions/state_machine.sql), whatever the statement says.
  created_at        timestamptz not null default clock_timestamp(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz not null default clock_timestamp(),
  traceparent       text,
  -- The task leaves on success (BullMQ's removeOnComplete): no event of its happy
  -- path (created, running, succeeded), and the completion deletes its row
  -- (functions/complete.sql). Anything else is recorded as for any task: a retry, a
  -- failure, a cancellation or a reaped lease appends its event, a failed task keeps
  -- its row and its dead letter, and with the outbox on every change is relayed.
  remove_on_complete boolean not null default false,
  -- Whether the task may have rows in task_events. Only removeOnComplete tasks can
  -- lack them; the delete trigger skips the history delete when no deleted task has
  -- any (functions/history.sql). Set by tasks_mark_events, never cleared.
  has_events        boolean not null default false,
  -- Whether the run's handler has started: false for a task a worker holds in its
  -- prefetch buffer. The reaper hands such a task back with its attempt
  -- (functions/reaper.sql).
  handler_started   boolean not null default true,
  -- Times the reaper handed the task back unstarted; from the first, a worker records
  -- the start before the handler runs, so that a task crashing its worker at once
  -- cannot loop for ever.
  returned_unstarted integer not null default 0
                      constraint tasks_returned_unstarted_non_negative check (returned_unstarted >= 0),
  constraint tasks_started_after_created check (created_at <= started_at),
  constraint tasks_finished_after_started check (started_at <= finished_at),
  constraint tasks_finished_after_created check (created_at <= finished_at),
  constraint tasks_running_has_lease check
    (status <> 'running' or (worker_id is not null and lease_expires_at is not null))
);

-- Idempotent enqueue by caller's key: a second enqueue with the same key finds the
-- first task (ON CONFLICT DO NOTHING arbitrates on every unique index).
create unique index tasks_dedupe_key_idx on taskfiber.tasks (dedupe_key)
  where dedupe_key is not null;

-- The claim: within one (queue, priority) level, (run_at, id) is the claim order,
-- so the claim walks the levels and reads each in index order (functions/claim.sql).
create index tasks_claim_idx on taskfiber.tasks (queue, priority desc, run_at, id)
  where status in ('queued', 'retrying');

-- The reaper's scan of expired leases, in lease order.
create index tasks_running_idx on taskfiber.tasks (lease_expires_at)
  where status = 'running';

-- No index on created_at: TaskStore.list pages in id order through the primary key
-- (creation order for the UUIDv7 ids taskfiber makes). Every task paid for one three
-- times, on its insert, its claim and its completion (a status change is never a HOT
-- update): the backend's CPU for a claim and completion of 500 removeOnComplete tasks
-- was 38.5 µs a task with it, 33.0 without.

-- Append-only history: one row per status change, written by the triggers in the
-- same statement as the change.
--
-- No foreign key to tasks: its check ran once per event row and took a KEY SHARE
-- lock on a task row the same transaction had just updated, a MultiXact per row:
-- 25 ms of a 45 ms claim of 250 tasks. The triggers write events from the task rows
-- themselves, and delete them with their task.
create table taskfiber.task_events (
  task_id      uuid not null,
  seq          integer not null,
  from_status  taskfiber.task_status,          -- null for creation
  to_status    taskfiber.task_status not null,
  attempt      integer not null,
  error        jsonb,
  worker_id    text,
  at           timestamptz not null,
  primary key (task_id, seq)
);

-- Failed tasks, and messages that never became tasks (bad JSON, schema mismatch,
-- missing header): nothing is ever dropped.
create table taskfiber.dead_letters (
  id           uuid primary key default gen_random_uuid(),
  source       text not null,                   -- 'task', 'kafka', 'http', …
  task_id      uuid,                            -- null when no task was created
  queue        text,
  type         text,
  reason       text not null,
  error        jsonb,
  payload      jsonb,
  raw          bytea,                           -- undecodable bytes, kept as received
  headers      jsonb,
  attempt      integer,
  created_at   timestamptz not null default clock_timestamp(),
  replayed_at  timestamptz
);
create index dead_letters_created_idx on taskfiber.dead_letters (created_at, id);
create index dead_letters_task_idx on taskfiber.dead_letters (task_id) where task_id is not null;

-- Status events waiting to be relayed to Kafka. Written only while
-- taskfiber.settings.outbox_topic is set (Kafka on). The identity gives the relay
-- its order; it is not on the task hot path unless the outbox is on.
create table taskfiber.outbox (
  id            bigint generated always as identity primary key,
  topic         text not null,
  key           text,
  payload       jsonb not null,
  headers       jsonb,
  created_at    timestamptz not null default clock_timestamp(),
  published_at  timestamptz
);
create index outbox_unpublished_idx on taskfiber.outbox (id) where published_at is null;

-- One row of instance-wide settings.
create table taskfiber.settings (
  singleton     boolean primary key default true constraint settings_singleton check (singleton),
  outbox_topic  text
);
insert into taskfiber.settings default values;

-- Which queues and task types each running instance serves, renewed by its
-- heartbeat (the database clock stamps it). A task due in a queue, or of a type,
-- that no live worker serves would wait for ever unnoticed; with this, supervisors
-- and `taskfiber status` say so (functions/workers.sql).
create table taskfiber.workers (
  id          text primary key,
  queues      text[] not null,
  types       text[] not null,
  started_at  timestamptz not null default clock_timestamp(),
  seen_at     timestamptz not null default clock_timestamp()
);
