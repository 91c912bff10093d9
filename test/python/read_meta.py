"""Waits for each task's result, then prints what the result backend holds and what Python makes of it.

Usage: read_meta.py '<json list of ids>' [timeout]
One JSON line per id: {"event": "meta", "id", "status", "value" (on success) or "exc_class"
("<module>.<qualname>" of what AsyncResult.get() raises), "exc_args", "message" (str of it),
"is_not_registered" (isinstance of celery.exceptions.NotRegistered), "meta_result_class" (the class
of backend.get_task_meta(id)['result']), and "raw": the stored celery-task-meta-<id> value, parsed}.
"""
import json
import sys

from celery.exceptions import NotRegistered
from celery.result import AsyncResult

from celery_app import app


def class_name(value):
    kind = type(value)
    return f'{kind.__module__}.{kind.__qualname__}'


timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 20
for task_id in json.loads(sys.argv[1]):
    result = AsyncResult(task_id, app=app)
    event = {'event': 'meta', 'id': task_id}
    try:
        event['value'] = result.get(timeout=timeout)
    except Exception as error:  # the test checks the class Celery rebuilt from the stored failure
        event.update(
            exc_class=class_name(error),
            exc_args=list(error.args),
            message=str(error),
            is_not_registered=isinstance(error, NotRegistered),
        )
    event['status'] = result.status
    event['meta_result_class'] = class_name(app.backend.get_task_meta(task_id)['result'])
    raw = app.backend.client.get(app.backend.get_key_for_task(task_id))
    event['raw'] = json.loads(raw) if raw is not None else None
    print(json.dumps(event, default=repr), flush=True)
