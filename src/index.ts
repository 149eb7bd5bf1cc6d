/**
 * taskfiber's public library API.
 *
 * The pure domain (statuses, priority ageing, error classification, retry
 * policies) and the PostgreSQL store (database layer, migrations, TaskStore,
 * transactions, classified database errors). The job runtime is added by the
 * next release.
 */
export * as Classification from "./domain/Classification.ts"
export * as Errors from "./domain/Errors.ts"
export * as Priority from "./domain/Priority.ts"
export * as RetryPolicy from "./domain/RetryPolicy.ts"
export * as Task from "./domain/Task.ts"
export * as TaskStatus from "./domain/TaskStatus.ts"

export * as Database from "./store/Database.ts"
export * as DatabaseError from "./store/DatabaseError.ts"
export * as EmbeddedPostgres from "./store/EmbeddedPostgres.ts"
export * as Migrations from "./store/Migrations.ts"
export * as TaskStore from "./store/TaskStore.ts"
export * as Transaction from "./store/Transaction.ts"
