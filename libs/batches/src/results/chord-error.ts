/**
 * Celery's `celery.exceptions.ChordError`: stored as a chord body's FAILURE when a header task
 * failed, so Python's `AsyncResult.get()` on the body raises `ChordError`, as it would under Celery.
 */
export class ChordError extends Error {
  override readonly name = 'ChordError';
}
