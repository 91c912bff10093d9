"""A plain Celery worker app with a no-op task, for the benchmark's Python peers."""
import json
import os

from celery import Celery
from celery.signals import worker_ready

app = Celery('bench', broker=os.environ.get('BROKER_URL', 'amqp://guest:guest@127.0.0.1:5672//'))
app.conf.task_default_queue = os.environ['CELERY_QUEUE']
app.conf.worker_redirect_stdouts = False
app.conf.worker_hijack_root_logger = False


@app.task(name='bench.noop', ignore_result=True)
def noop(*args, **kwargs):
    return None


@worker_ready.connect
def announce(**_):
    print(json.dumps({'event': 'ready'}), flush=True)
