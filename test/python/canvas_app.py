"""The Python side of the canvas tests: a Celery app whose `nest.*` tasks run on the Nest worker.

Broker and backend come from BROKER_URL / RESULT_BACKEND (as celery_app.py). Python tasks go to
PY_QUEUE (default: CELERY_QUEUE, which PythonProcess sets), `nest.*` tasks to NEST_QUEUE through
`task_routes`, so every Python sender (client, worker continuing a chain, chord body) routes them
as a Celery user's app would.
"""
import os

from celery import Celery

PY_QUEUE = os.environ.get('PY_QUEUE') or os.environ.get('CELERY_QUEUE') or 'celery'
NEST_QUEUE = os.environ.get('NEST_QUEUE') or 'nest'

app = Celery(
    'canvas',
    broker=os.environ.get('BROKER_URL', 'amqp://guest:guest@127.0.0.1:5672//'),
    backend=os.environ.get('RESULT_BACKEND', 'redis://127.0.0.1:6379/0'),
)
app.conf.task_default_queue = PY_QUEUE
app.conf.task_routes = {'nest.*': {'queue': NEST_QUEUE}}
# Quiet and quick to start: one process, no gossip with other nodes.
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True

ERRBACK_KEY = 'canvas-errback-{}'


@app.task(name='py.add')
def add(x, y):
    return x + y


@app.task(name='py.mul')
def mul(x, y):
    return x * y


@app.task(name='py.tsum')
def tsum(values):
    return sum(values)


@app.task(name='py.fail')
def fail(message):
    raise ValueError(message)


@app.task(name='py.identity')
def identity(x):
    return x


@app.task(name='py.record_error')
def record_error(task_id):
    """An errback in Celery's single-argument form: called as a task with the failed task's id."""
    app.backend.client.set(ERRBACK_KEY.format(task_id), task_id, ex=3600)
    return task_id


@app.task(name='py.whoami', bind=True)
def whoami(self, *args):
    """What this task's message said about where it came from."""
    request = self.request
    return {
        'args': list(args),
        'id': request.id,
        'parent_id': request.parent_id,
        'root_id': request.root_id,
        'group': request.group,
    }
