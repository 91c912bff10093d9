"""Sends tasks with Celery's own client and reads their results; one JSON line per event on stdout.

Usage: producer.py '<spec>' where spec is
  {"task": "count_click", "args": [...], "kwargs": {...}, "countdown": null, "protocol": 2,
   "count": 1, "wait": true, "timeout": 20}
With count > 1 each task gets args + [i]. Results are read with AsyncResult(id).get().
"""
import json
import sys

from celery_app import app


def main():
    spec = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    app.conf.task_protocol = spec.get('protocol', 2)
    count = spec.get('count', 1)
    results = []
    for i in range(count):
        args = spec.get('args', []) + ([i] if count > 1 else [])
        result = app.send_task(spec['task'], args=args, kwargs=spec.get('kwargs', {}), countdown=spec.get('countdown'))
        results.append(result)
    print(json.dumps({'event': 'sent', 'ids': [r.id for r in results]}), flush=True)
    if not spec.get('wait', True):
        return
    for result in results:
        try:
            value = result.get(timeout=spec.get('timeout', 20))
            print(json.dumps({'event': 'result', 'id': result.id, 'status': result.status, 'result': value}), flush=True)
        except Exception as error:  # the test reads the remote exception's type and message
            print(json.dumps({'event': 'error', 'id': result.id, 'exc_type': type(error).__name__, 'message': str(error)}), flush=True)


if __name__ == '__main__':
    main()
