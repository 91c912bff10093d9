import type { Logger } from '@nestjs/common';
import { ChordError } from '../results/chord-error.js';
import { exceptionRepr } from '../results/python-repr.js';
import type { ResultBackend } from '../results/result-backend.js';
import type { SimpleRequest } from '../simple-request.js';
import type { CanvasSender } from './canvas-sender.js';
import { signaturesOf } from './signature.js';

export type FinalState = 'SUCCESS' | 'FAILURE' | 'REVOKED';

/** Whether a request has canvas work to do once its outcome is known (most have none). */
export function hasWorkflow(request: SimpleRequest): boolean {
  return request.callbacks.length > 0 || request.errbacks.length > 0 || request.chain.length > 0 || request.chord !== null;
}

/**
 * What Celery's worker does after a task's outcome is known (`celery/app/trace.py`, the backend's
 * `mark_as_done`/`mark_as_failure`): on success the next task of its chain and its callbacks get
 * the result; on failure its errbacks get its id; as a chord header task it counts toward the
 * chord, and the last one sends the body with every result. Runs after the result is stored and
 * before the message is acked, so a crash in between sends them again rather than never.
 */
export class WorkflowSteps {
  constructor(
    private readonly sender: CanvasSender,
    private readonly results: ResultBackend,
    private readonly logger: Logger,
  ) {}

  /** Never rejects: what cannot be sent is logged, and the request's own result stands. */
  async settled(request: SimpleRequest, state: FinalState, value: unknown): Promise<void> {
    try {
      await this.follow(request, state, value);
    } catch (error) {
      this.logger.error(`Could not continue the workflow of task ${request.id} (${request.name}): ${String(error)}`);
    }
  }

  private async follow(request: SimpleRequest, state: FinalState, value: unknown): Promise<void> {
    const context = { parentId: request.id, rootId: request.rootId ?? request.id };
    if (state === 'SUCCESS') {
      const [callback, ...more] = request.callbacks;
      // Several callbacks run as one group, as Celery sends them.
      if (more.length > 0) await this.sender.sendGroup(request.callbacks, [value], context);
      else if (callback) await this.sender.send(callback, [value], context);
      if (request.chain.length > 0) {
        const next = request.chain[request.chain.length - 1];
        await this.sender.send(next, [value], { ...context, chain: request.chain.slice(0, -1) });
      }
    } else if (state === 'FAILURE' && request.errbacks.length > 0) {
      // Sent as tasks with the failed task's id: Celery's single-argument errback form.
      await this.sender.sendGroup(request.errbacks, [request.id], context);
    }
    if (request.chord && request.group) await this.chordPart(request, state, value);
  }

  private async chordPart(request: SimpleRequest, state: FinalState, value: unknown): Promise<void> {
    const body = request.chord;
    const groupId = request.group;
    if (!body || !groupId) return;
    const parts = await this.results.chordPartReturn({ groupId, taskId: request.id, groupIndex: request.groupIndex, state, result: value });
    if (!parts) return;
    const context = { parentId: request.id, rootId: request.rootId ?? request.id };
    const failed = parts.find((part) => part.state === 'FAILURE' || part.state === 'REVOKED');
    if (!failed) {
      await this.sender.send(body, [parts.map((part) => part.result)], context);
      return;
    }
    // Celery's chord_error_from_stack: the body fails with ChordError and its errbacks get its id.
    const bodyId = typeof body.options.task_id === 'string' ? body.options.task_id : null;
    const error = new ChordError(`Dependency ${failed.taskId} raised ${exceptionRepr(failed.result)}`);
    this.logger.warn(`Chord ${groupId}: ${error.message}; its body ${body.task} fails`);
    if (bodyId) await this.results.markAsFailure(bodyId, error);
    const errbacks = signaturesOf(body.options.link_error);
    if (errbacks.length > 0 && bodyId) await this.sender.sendGroup(errbacks, [bodyId], context);
  }
}
