import './support/no-network.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { taskRouter } from '../../libs/batches/src/canvas/task-routes.js';

describe('taskRouter: Celery’s task_routes', () => {
  it('sends every task to the default queue when there are no routes', () => {
    const route = taskRouter({}, 'celery');
    assert.equal(route('anything'), 'celery');
  });

  it('matches exact task names', () => {
    const route = taskRouter({ 'billing.charge': 'billing' }, 'celery');
    assert.equal(route('billing.charge'), 'billing');
    assert.equal(route('billing.charges'), 'celery');
  });

  it('treats * as any run of characters, including none and dots', () => {
    const route = taskRouter({ 'py.*': 'python', '*.report': 'reports' }, 'celery');
    assert.equal(route('py.add'), 'python');
    assert.equal(route('py.deep.nested.task'), 'python');
    assert.equal(route('py.'), 'python');
    assert.equal(route('daily.report'), 'reports');
    assert.equal(route('python.add'), 'celery');
  });

  it('takes everything else in a pattern literally (dots, pluses, brackets)', () => {
    const route = taskRouter({ 'a.b': 'dots', 'c+d': 'plus', 'e[1]': 'brackets' }, 'celery');
    assert.equal(route('a.b'), 'dots');
    assert.equal(route('aXb'), 'celery');
    assert.equal(route('c+d'), 'plus');
    assert.equal(route('ccd'), 'celery');
    assert.equal(route('e[1]'), 'brackets');
    assert.equal(route('e1'), 'celery');
  });

  it('uses the first pattern that matches, in the order the routes are written', () => {
    const route = taskRouter({ 'py.urgent.*': 'urgent', 'py.*': 'python', '*': 'catch-all' }, 'celery');
    assert.equal(route('py.urgent.page'), 'urgent');
    assert.equal(route('py.add'), 'python');
    assert.equal(route('js.add'), 'catch-all');
    const reversed = taskRouter({ 'py.*': 'python', 'py.urgent.*': 'urgent' }, 'celery');
    assert.equal(reversed('py.urgent.page'), 'python');
  });

  it('falls back to the default queue for a task no pattern matches', () => {
    const route = taskRouter({ 'py.*': 'python' }, 'work');
    assert.equal(route('js.add'), 'work');
  });

  it('matches the whole name, not a part of it', () => {
    const route = taskRouter({ add: 'math' }, 'celery');
    assert.equal(route('add'), 'math');
    assert.equal(route('py.add'), 'celery');
    assert.equal(route('adder'), 'celery');
  });
});
