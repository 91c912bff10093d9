"""Reads stored results by id with Celery's AsyncResult: results.py '<json list of ids>' [timeout]."""
import json
import sys

from celery.result import AsyncResult

from celery_app import app

for task_id in json.loads(sys.argv[1]):
    try:
        value = AsyncResult(task_id, app=app).get(timeout=float(sys.argv[2]) if len(sys.argv) > 2 else 20)
        print(json.dumps({'event': 'result', 'id': task_id, 'result': value}), flush=True)
    except Exception as error:
        print(json.dumps({'event': 'error', 'id': task_id, 'exc_type': type(error).__name__, 'message': str(error)}), flush=True)
