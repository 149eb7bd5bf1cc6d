/**
 * What a run of a task ended as, once its settling statement is written.
 *
 * @since 0.1.0
 */

/**
 * The outcome written for a run: its task's new status (`succeeded`, `retrying`,
 * `failed`, `cancelled`), `released` (back to `queued` at shutdown, attempt given
 * back), or `abandoned`: nothing could be written (the claim had lost the task, or
 * the database failed), and the task's lease decides.
 *
 * @since 0.1.0
 */
export type Outcome = "succeeded" | "retrying" | "failed" | "cancelled" | "released" | "abandoned"
