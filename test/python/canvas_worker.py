"""Runs canvas_app's Celery worker on PY_QUEUE: canvas_worker.py [NEST_QUEUE].

Prints {"event": "ready"} once it consumes; exits on SIGTERM.
"""
import json
import os
import sys

if len(sys.argv) > 1:
    os.environ['NEST_QUEUE'] = sys.argv[1]

from celery.signals import worker_ready  # noqa: E402

from canvas_app import PY_QUEUE, app  # noqa: E402

# Keep stdout ours: the tests read JSON lines from it.
app.conf.worker_redirect_stdouts = False


@worker_ready.connect
def announce(**_):
    print(json.dumps({'event': 'ready', 'queue': PY_QUEUE}), flush=True)


if __name__ == '__main__':
    app.worker_main([
        'worker', '--pool', 'solo', '--concurrency', '1', '--loglevel', 'WARNING',
        '--queues', PY_QUEUE,
        '--without-gossip', '--without-mingle', '--without-heartbeat',
    ])
