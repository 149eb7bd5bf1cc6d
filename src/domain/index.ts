/**
 * The pure domain core of taskfiber: no I/O, only data, rules and schemas.
 *
 * @since 0.1.0
 */

/**
 * Task statuses, moves and the transition function.
 *
 * @since 0.1.0
 */
export * as TaskStatus from "./TaskStatus.ts"

/**
 * Priorities and ageing.
 *
 * @since 0.1.0
 */
export * as Priority from "./Priority.ts"

/**
 * The errors a task run can end with.
 *
 * @since 0.1.0
 */
export * as Errors from "./Errors.ts"

/**
 * Error classification and the stored `last_error` record.
 *
 * @since 0.1.0
 */
export * as Classification from "./Classification.ts"

/**
 * Retry policies: backoff delays and the matching `Schedule`.
 *
 * @since 0.1.0
 */
export * as RetryPolicy from "./RetryPolicy.ts"

/**
 * Values encoded for jsonb, or the reason they cannot be stored.
 *
 * @since 0.1.0
 */
export * as StoredJson from "./StoredJson.ts"

/**
 * The task model schemas.
 *
 * @since 0.1.0
 */
export * as Task from "./Task.ts"
