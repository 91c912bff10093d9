"""A Celery worker on CELERY_QUEUE whose tasks report what a message carried, for the lean-messages tests.

Prints {"event": "ready"} once it consumes and {"event": "revoked", ...} for each request it revokes
(expired ones included); exits on SIGTERM.
"""
import json
import sys
import time

from celery.signals import task_revoked, worker_ready

from celery_app import app

# Keep stdout ours: the tests read JSON lines from it.
app.conf.worker_redirect_stdouts = False

# Every header of Celery's protocol-2 table (celery.app.amqp.as_task_v2).
CELERY_HEADERS = (
    'lang', 'task', 'id', 'shadow', 'eta', 'expires', 'group', 'group_index', 'retries',
    'timelimit', 'root_id', 'parent_id', 'argsrepr', 'kwargsrepr', 'origin', 'ignore_result',
)


@app.task(name='lean.inspect', bind=True)
def inspect(self, *args, **kwargs):
    """Returns what Celery made of the message: its request fields and which headers it had."""
    request = self.request
    present = vars(request)
    return {
        'id': request.id,
        'retries': request.retries,
        'group': request.group,
        'parent_id': request.parent_id,
        'root_id': request.root_id,
        'eta': request.eta,
        'expires': request.expires,
        'ignore_result': request.ignore_result,
        'args': list(args),
        'kwargs': kwargs,
        'ran_at': time.time(),
        'headers': [name for name in CELERY_HEADERS if name in present],
        'nulls': [name for name in CELERY_HEADERS if name in present and present[name] is None],
    }


@app.task(name='lean.retry', bind=True, max_retries=3)
def retry(self, until):
    """Retries itself (Celery's own Task.retry) until `retries` reaches `until`; returns the count."""
    if self.request.retries < until:
        raise self.retry(countdown=0)
    return self.request.retries


@task_revoked.connect
def announce_revoked(request=None, expired=False, **_):
    print(json.dumps({'event': 'revoked', 'id': request.id, 'expired': bool(expired)}), flush=True)


@worker_ready.connect
def announce_ready(**_):
    print(json.dumps({'event': 'ready'}), flush=True)


if __name__ == '__main__':
    pool = sys.argv[1] if len(sys.argv) > 1 else 'solo'
    app.worker_main([
        'worker', '--pool', pool, '--concurrency', '1', '--loglevel', 'WARNING',
        '--without-gossip', '--without-mingle', '--without-heartbeat',
    ])
