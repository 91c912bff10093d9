"""Builds a canvas with Celery's own API from a JSON spec, applies it and reports what ran.

Usage: canvas_client.py '<spec>' where spec is
  {"nest_queue": "...", "timeout": 20, "canvas": <canvas>}
and a canvas is one of
  {"task": "py.add", "args": [1, 2], "kwargs": {}, "immutable": false, "options": {},
   "link": [<canvas>], "link_error": [<canvas>]}            a signature (task.s / task.si)
  {"chain": [<canvas>, ...]}                                   chain(a, b, ...), i.e. a | b | ...
  {"chord": [<canvas>, ...], "body": <canvas>}                 chord(header)(body)
  {"group": [<canvas>, ...]}                                   group(...)
`nest.*` tasks are not registered here: they are plain signatures, routed to NEST_QUEUE by the
app's task_routes, exactly as a Celery user names tasks of another code base.

Prints one JSON line {"event": "outcome", ...} with
  id, status, result | error     of the AsyncResult that apply_async returned (read with .get)
  steps                          that result and its .parent, .parent.parent, ... first to last
                                 (a chord's header is a group step with its results); each is
                                 read by id, so a step reports its own outcome, not its parent's
  callbacks, errbacks            each link / link_error signature, its id frozen before sending
and for every result read: its .children ids, and the `canvas-errback-<id>` key if an errback
wrote one. All reads share one deadline (timeout seconds), so a canvas that never finishes
costs at most that long.
"""
import json
import os
import sys
import time

SPEC = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
if SPEC.get('nest_queue'):
    os.environ['NEST_QUEUE'] = SPEC['nest_queue']

from celery import chain, chord, group  # noqa: E402
from celery.result import AsyncResult, ResultSet  # noqa: E402

from canvas_app import ERRBACK_KEY, app  # noqa: E402

DEADLINE = time.monotonic() + float(SPEC.get('timeout', 20))
callbacks = []  # (kind, task, frozen id) of every link / link_error signature built


def remaining():
    return max(0.5, DEADLINE - time.monotonic())


def build(spec):
    if 'chain' in spec:
        return chain(*[build(each) for each in spec['chain']], app=app)
    if 'chord' in spec:
        return chord([build(each) for each in spec['chord']], build(spec['body']), app=app)
    if 'group' in spec:
        return group([build(each) for each in spec['group']], app=app)
    sig = app.signature(
        spec['task'],
        args=tuple(spec.get('args', [])),
        kwargs=spec.get('kwargs', {}),
        immutable=spec.get('immutable', False),
        **spec.get('options', {}),
    )
    for kind in ('link', 'link_error'):
        for each in spec.get(kind, []):
            callback = build(each)
            frozen = callback.freeze()
            callbacks.append((kind, each.get('task'), frozen.id))
            getattr(sig, kind)(callback)
    return sig


def error_of(exc):
    return {'type': type(exc).__name__, 'module': type(exc).__module__, 'message': str(exc)}


def ids_of(results):
    if results is None:
        return None
    return [
        {'group': each.id, 'ids': [r.id for r in each.results]} if isinstance(each, ResultSet) else each.id
        for each in results
    ]


def describe(result):
    if isinstance(result, ResultSet):
        return {'kind': 'group', 'id': getattr(result, 'id', None), 'results': [describe(r) for r in result.results]}
    # A fresh handle, without the .parent links apply_async set: each task's own stored outcome
    # (a chain's result would re-raise its parent's error instead of its own).
    result = AsyncResult(result.id, app=app)
    out = {'kind': 'task', 'id': result.id}
    try:
        out['result'] = result.get(timeout=remaining(), disable_sync_subtasks=False)
    except Exception as exc:  # the tests read the exception's type and message
        out['error'] = error_of(exc)
    out['status'] = result.state
    try:
        out['children'] = ids_of(result.children)
    except Exception as exc:
        out['children_error'] = error_of(exc)
    return out


def add_errback_keys(described):
    """Read last, once every errback has been waited for."""
    if described.get('kind') == 'group':
        for each in described['results']:
            add_errback_keys(each)
        return
    key = app.backend.client.get(ERRBACK_KEY.format(described['id']))
    if key is not None:
        described['errback_key'] = key.decode()


def main():
    canvas = build(SPEC['canvas'])
    result = canvas.apply_async()
    print(json.dumps({'event': 'sent', 'id': result.id}), flush=True)
    steps = []
    node = result
    while node is not None:
        steps.append(node)
        node = getattr(node, 'parent', None)
    steps.reverse()
    described = [describe(step) for step in steps]
    linked = [
        (kind, {'task': task, **describe(AsyncResult(task_id, app=app))}) for kind, task, task_id in callbacks
    ]
    for each in described:
        add_errback_keys(each)
    outcome = {
        'event': 'outcome',
        **described[-1],
        'steps': described,
        'callbacks': [each for kind, each in linked if kind == 'link'],
        'errbacks': [each for kind, each in linked if kind == 'link_error'],
    }
    print(json.dumps(outcome, default=str), flush=True)


if __name__ == '__main__':
    main()
