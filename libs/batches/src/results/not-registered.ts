/**
 * Celery's `celery.exceptions.NotRegistered`: what a worker stores as a task's FAILURE when it
 * receives a message for a task it has no handler for. Stored exactly as Celery 5.2's worker stores
 * it (`{"exc_type": "NotRegistered", "exc_message": [name], "exc_module": "celery.exceptions"}`, no
 * traceback), so Python's `AsyncResult.get()` raises `celery.exceptions.NotRegistered`.
 */
export class NotRegistered extends Error {
  override readonly name = 'NotRegistered';

  constructor(
    /** The task name no handler is registered for (Celery's only exception argument). */
    readonly taskName: string,
  ) {
    super(`Task of kind '${taskName}' never registered, please make sure it's imported.`);
    // Celery stores no traceback for it (nothing ran), and `markAsFailure` stores `stack` as the traceback.
    this.stack = undefined;
  }
}
