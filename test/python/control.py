"""Remote control from Python, as `celery inspect` / `celery control` do it.

Argument: JSON {"destination": [...], "timeout": s, "inspect": ["ping", ...], "revoke": [ids],
"broadcast": [{"command": ..., "arguments": {...}}]}. Prints one JSON line per call:
{"event": "inspect", "method": m, "reply": {...}}, {"event": "revoke", "reply": [...]},
{"event": "broadcast", "command": c, "reply": [...]}.
"""
import json
import sys

from celery_app import app


def emit(**fields):
    print(json.dumps(fields, default=str), flush=True)


if __name__ == '__main__':
    spec = json.loads(sys.argv[1])
    destination = spec.get('destination')
    timeout = spec.get('timeout', 2.0)
    inspect = app.control.inspect(destination=destination, timeout=timeout)
    for method in spec.get('inspect', []):
        emit(event='inspect', method=method, reply=getattr(inspect, method)())
    for task_id in spec.get('revoke', []):
        emit(event='revoke', id=task_id,
             reply=app.control.revoke(task_id, destination=destination, reply=True, timeout=timeout))
    for each in spec.get('broadcast', []):
        emit(event='broadcast', command=each['command'],
             reply=app.control.broadcast(each['command'], arguments=each.get('arguments', {}),
                                         destination=destination, reply=True, timeout=timeout))
