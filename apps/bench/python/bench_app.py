"""A plain Celery app with a no-op task, for the benchmark's Python peers (queue from CELERY_QUEUE).

With CELERY_RESULT_BACKEND set (a redis:// URL), the task returns its argument and Celery stores
each result there; otherwise it ignores results, like the Nest rows' `ignoreResult`.
"""
import os

from celery import Celery
from kombu.asynchronous.hub import Hub

# Debian's kombu 5.2.4 takes the event loop's poll timeout from its timers alone (up to 10 s): a
# callback made ready while the previous ones ran, such as the solo pool's deferred ack, then waits
# in epoll with its messages unacked, and the worker crawls at a few tasks per 10 s. Polling without
# waiting while callbacks are ready makes the benchmark measure Celery, not that bug.
_fire_timers = Hub.fire_timers


def _fire_timers_unless_ready(self, *args, **kwargs):
    delay = _fire_timers(self, *args, **kwargs)
    return 0 if self._ready else delay


Hub.fire_timers = _fire_timers_unless_ready

RESULT_BACKEND = os.environ.get('CELERY_RESULT_BACKEND') or None

app = Celery('bench', broker=os.environ.get('BROKER_URL', 'amqp://guest:guest@127.0.0.1:5672//'), backend=RESULT_BACKEND)
app.conf.task_default_queue = os.environ['CELERY_QUEUE']
app.conf.worker_hijack_root_logger = False


@app.task(name='bench.noop', ignore_result=RESULT_BACKEND is None)
def noop(*args, **kwargs):
    return args[0] if args else None
