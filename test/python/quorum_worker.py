"""Runs a Celery worker on CELERY_QUEUE declared as a quorum queue, with the `task_queues` entry the
README shows for `queues: { [name]: { type: 'quorum' } }` on the Nest side.

Prints {"event": "ready"} once it consumes, exits on SIGTERM. Task 'queues.shared' answers
{"by": "python", "value": value}, so a test can tell which side ran a request.
"""
import json
import os

import celery
import kombu.connection
from celery.signals import worker_ready
from kombu import Exchange, Queue

from celery_app import app

queue = os.environ.get('CELERY_QUEUE', 'celery')
app.conf.task_queues = [
    Queue(queue, Exchange(queue, type='direct'), routing_key=queue, queue_arguments={'x-queue-type': 'quorum'}),
]
app.conf.worker_redirect_stdouts = False

# Quorum queues refuse a global (per-channel) basic.qos. Celery 5.5+ sees the quorum queue and uses
# per-consumer QoS by itself (worker_detect_quorum_queues); older workers need telling.
if tuple(int(part) for part in celery.__version__.split('.')[:2]) < (5, 5):
    kombu.connection.Connection.qos_semantics_matches_spec = property(lambda self: True)


@app.task(name='queues.shared')
def shared(value):
    return {'by': 'python', 'value': value}


@worker_ready.connect
def announce(**_):
    print(json.dumps({'event': 'ready'}), flush=True)


if __name__ == '__main__':
    app.worker_main([
        'worker', '--pool', 'solo', '--concurrency', '1', '--loglevel', 'WARNING',
        '--without-gossip', '--without-mingle', '--without-heartbeat',
    ])
