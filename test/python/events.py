"""Collects Celery events as `celery events` / Flower do: `app.events.Receiver` with a '*' handler.

Argument: JSON {"hostname": node, "seconds": max run time}. Prints {"event": "ready"} once its
queue is bound, then every event of `hostname` as {"event": "celery", "body": {...}} (what the
Receiver hands its handlers, clock and timestamp adjusted as it does), after each worker event
{"event": "worker", ...} (the worker as `app.events.State()` sees it), and once the node sent
`worker-offline`, on SIGTERM or when the time is up, {"event": "state", ...}: the worker and tasks
as `State` knows them.
"""
import json
import signal
import sys
import time

from celery_app import app


def emit(**fields):
    print(json.dumps(fields, default=repr), flush=True)


def main():
    spec = json.loads(sys.argv[1])
    hostname = spec['hostname']
    deadline = time.monotonic() + float(spec.get('seconds', 60))
    state = app.events.State()
    receiver = None
    stopping = []

    def stop(reason):
        stopping.append(reason)
        if receiver is not None:
            receiver.should_stop = True

    signal.signal(signal.SIGTERM, lambda *_: stop('term'))

    def collect(event):
        if event.get('hostname') != hostname:
            return
        state.event(dict(event))
        emit(event='celery', body=event)
        if event['type'].startswith('worker-'):
            emit(event='worker', **worker_info(state.workers.get(hostname)))
        if event['type'] == 'worker-offline':
            stop('offline')

    def on_iteration():
        if time.monotonic() > deadline:
            stop('timeout')

    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={'*': collect})
        receiver.on_consume_ready = lambda *args, **kwargs: emit(event='ready')
        receiver.on_iteration = on_iteration
        # wakeup=False: no `heartbeat` broadcast, the node must send its events unprompted.
        for _ in receiver.consume(safety_interval=0.2, wakeup=False):
            pass

    emit(
        event='state',
        reason=stopping[:1],
        worker=worker_info(state.workers.get(hostname)),
        tasks={
            uuid: {
                'state': task.state,
                'name': task.name,
                'args': task.args,
                'kwargs': task.kwargs,
                'result': task.result,
                'runtime': task.runtime,
                'exception': task.exception,
                'worker': task.worker and task.worker.hostname,
            }
            for uuid, task in state.tasks.items()
        },
    )


def worker_info(worker):
    if worker is None:
        return {'known': False}
    return {
        'known': True,
        'hostname': worker.hostname,
        'alive': worker.alive,
        'active': worker.active,
        'processed': worker.processed,
        'sw_ident': worker.sw_ident,
        'sw_ver': worker.sw_ver,
        'sw_sys': worker.sw_sys,
        'freq': worker.freq,
        'loadavg': worker.loadavg,
        'heartbeats': len(worker.heartbeats),
    }


if __name__ == '__main__':
    main()
