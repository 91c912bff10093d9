"""Prints how a Celery worker reports a queue in `inspect active_queues`: {"event": "queue", "queue": {...}}.

Argument: the queue name. The queue is the one Celery creates for a name it is told to consume
(`app.amqp.queues[name]`), as a dict the way `active_queues` sends it.
"""
import json
import sys

from celery_app import app

if __name__ == '__main__':
    queue = app.amqp.queues[sys.argv[1]]
    print(json.dumps({'event': 'queue', 'queue': dict(queue.as_dict(recurse=True))}, default=str), flush=True)
