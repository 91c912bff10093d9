import assert from 'node:assert/strict';
import type { INestMicroservice } from '@nestjs/common';
import type { SimpleRequest } from 'nestjs-batches';
import type { CanvasSpec, Outcome } from './canvas-spec.js';
import { PythonProcess } from './python.js';
import { recorder, type Recorder } from './worker-app.js';

/** Seconds the Python client waits for a whole canvas (all its reads share one deadline). */
const CANVAS_TIMEOUT = 20;

/** The Nest batch tasks `nest.*` that canvases send to `queue`. */
export function nestCanvasTasks(queue: string) {
  const handler = { flushEvery: 10, flushInterval: 50, queue };
  const Double = recorder('nest.double', handler, (requests: SimpleRequest[]) => requests.map((request) => Number(request.args[0]) * 2));
  const Add = recorder('nest.add', handler, (requests: SimpleRequest[]) =>
    requests.map((request) => Number(request.args[0]) + Number(request.args[1])),
  );
  const TSum = recorder('nest.tsum', handler, (requests: SimpleRequest[]) =>
    requests.map((request) => (request.args[0] as number[]).reduce((sum, value) => sum + value, 0)),
  );
  const Fail = recorder('nest.fail', { ...handler, maxRetries: 0 }, () => {
    throw new Error('nest.fail fails on purpose');
  });
  // Fails each request's first run: its retry must still carry the request's chain.
  const Flaky = recorder('nest.flaky', { ...handler, flushEvery: 1, maxRetries: 2, retryDelay: 20 }, (requests: SimpleRequest[]) => {
    if (requests.some((request) => request.retries === 0)) throw new Error('nest.flaky fails its first run');
    return requests.map((request) => Number(request.args[0]) * 2);
  });
  return { Double, Add, TSum, Fail, Flaky };
}

/** Runs a canvas from Python: canvas_client.py builds it with Celery's API, applies it and reads everything it ran. */
export function pythonCanvasRunner(queues: { pyQueue: string; nestQueue: string }): (canvas: CanvasSpec) => Promise<Outcome> {
  return async (canvas) => {
    const events = await PythonProcess.run(
      'canvas_client.py',
      [JSON.stringify({ nest_queue: queues.nestQueue, timeout: CANVAS_TIMEOUT, canvas })],
      queues.pyQueue,
    );
    const outcome = events.find((event) => event.event === 'outcome');
    assert.ok(outcome, `canvas_client.py printed no outcome: ${JSON.stringify(events)}`);
    return outcome as unknown as Outcome;
  };
}

/** What the Nest worker ran, read from its recording handlers once `app()` is up. */
export function nestRuns(app: () => INestMicroservice | undefined): {
  runsInNest(handlerType: unknown, id: string): SimpleRequest[];
  ranInNest(handlerType: unknown, id: string): SimpleRequest;
} {
  /** Every run of the Nest request `id` (more than one when it was retried). */
  function runsInNest(handlerType: unknown, id: string): SimpleRequest[] {
    const nest = app();
    assert.ok(nest, 'the Nest worker is up');
    const recorded = nest.get(handlerType as never) as Recorder;
    return recorded.batches.flat().filter((each) => each.id === id);
  }

  /** The request the Nest worker ran under `id`. */
  function ranInNest(handlerType: unknown, id: string): SimpleRequest {
    const [request] = runsInNest(handlerType, id);
    assert.ok(request, `the Nest worker ran no request ${id}`);
    return request;
  }

  return { runsInNest, ranInNest };
}

/** What the cases registered in canvas.test.ts's suite share: the two workers it starts once. */
export interface CanvasWorkers {
  readonly tasks: ReturnType<typeof nestCanvasTasks>;
  runCanvas(canvas: CanvasSpec): Promise<Outcome>;
  runsInNest(handlerType: unknown, id: string): SimpleRequest[];
  ranInNest(handlerType: unknown, id: string): SimpleRequest;
}
