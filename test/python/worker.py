"""Runs a Celery worker on CELERY_QUEUE; prints {"event": "ready"} once it consumes, exits on SIGTERM."""
import json
import sys

from celery.signals import worker_ready

from celery_app import app

# Keep stdout ours: the tests read JSON lines from it.
app.conf.worker_redirect_stdouts = False


@worker_ready.connect
def announce(**_):
    print(json.dumps({'event': 'ready'}), flush=True)


if __name__ == '__main__':
    pool = sys.argv[1] if len(sys.argv) > 1 else 'solo'
    app.worker_main([
        'worker', '--pool', pool, '--concurrency', '1', '--loglevel', 'WARNING',
        '--without-gossip', '--without-mingle', '--without-heartbeat',
    ])
