"""A plain Python Celery app with default settings, for the interop tests.

Broker and backend come from BROKER_URL / RESULT_BACKEND; the queue from CELERY_QUEUE
(default 'celery'), declared the way Celery always declares it.
"""
import os

from celery import Celery

app = Celery(
    'interop',
    broker=os.environ.get('BROKER_URL', 'amqp://guest:guest@127.0.0.1:5672//'),
    backend=os.environ.get('RESULT_BACKEND', 'redis://127.0.0.1:6379/0'),
)
app.conf.task_default_queue = os.environ.get('CELERY_QUEUE', 'celery')
app.conf.task_protocol = int(os.environ.get('CELERY_PROTOCOL', '2'))
# Quiet and quick to start: one process, no gossip with other nodes.
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


@app.task(name='add')
def add(x, y):
    return x + y


@app.task(name='echo')
def echo(value):
    return value


@app.task(name='fail')
def fail(message):
    raise ValueError(message)


@app.task(name='noop')
def noop(*args, **kwargs):
    return None
