"""Python Celery/kombu side of celeriac's Redis interop tests.

Usage (prints one JSON line on stdout):
  kombu_io.py send     BROKER_URL KEYPREFIX QUEUE TASK_ID   apply_async tasks.add, no worker
  kombu_io.py receive  BROKER_URL KEYPREFIX QUEUE           read one message with kombu, ack it
  kombu_io.py get      BACKEND_URL TASK_ID                  AsyncResult(id).get(timeout=10)
  kombu_io.py store    BACKEND_URL TASK_ID                  store a SUCCESS result
  kombu_io.py call     BROKER_URL KEYPREFIX BACKEND_URL QUEUE NAME ARGS KWARGS
                                                            apply_async and get() the result
"""
import json
import sys

from celery import Celery
from kombu import Connection


def app_for(broker="memory://", backend=None, prefix=""):
    app = Celery("interop", broker=broker, backend=backend)
    app.conf.broker_transport_options = {"global_keyprefix": prefix} if prefix else {}
    return app


def main(argv):
    cmd = argv[1]
    if cmd == "send":
        url, prefix, queue, task_id = argv[2:6]
        app = app_for(url, prefix=prefix)
        app.send_task("tasks.add", args=[2], kwargs={"y": 3}, queue=queue, task_id=task_id,
                      headers={"x-custom": "v"}, priority=5, countdown=0)
        print(json.dumps({"sent": task_id}))
    elif cmd == "receive":
        url, prefix, queue = argv[2:5]
        options = {"global_keyprefix": prefix} if prefix else {}
        with Connection(url, transport_options=options) as conn:
            q = conn.SimpleQueue(queue)
            msg = q.get(timeout=10)
            out = {
                "headers": msg.headers,
                "payload": msg.payload,
                "properties": msg.properties,
                "content_type": msg.content_type,
                "content_encoding": msg.content_encoding,
            }
            msg.ack()
            q.close()
        print(json.dumps(out))
    elif cmd == "get":
        url, task_id = argv[2:4]
        app = app_for(backend=url)
        result = app.AsyncResult(task_id)
        print(json.dumps({"result": result.get(timeout=10), "state": result.state}))
    elif cmd == "store":
        url, task_id = argv[2:4]
        app = app_for(backend=url)
        app.backend.store_result(task_id, {"from": "python", "n": [1, 2]}, "SUCCESS")
        print(json.dumps({"stored": task_id}))
    elif cmd == "call":
        url, prefix, backend, queue, name, args, kwargs = argv[2:9]
        app = app_for(url, backend=backend, prefix=prefix)
        result = app.signature(name).apply_async(
            args=json.loads(args), kwargs=json.loads(kwargs), queue=queue)
        value = result.get(timeout=20)
        print(json.dumps({"result": value, "state": result.state, "id": result.id}))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
