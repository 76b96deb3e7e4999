"""Python side of celeriac's canvas interop tests (tests/canvas_interop_test.ts).

Configured from the environment: CELERIAC_TEST_BROKER, CELERIAC_TEST_BACKEND and
CELERIAC_TEST_PREFIX (kombu global_keyprefix, so the run leaves nothing in shared keys).
Run as ``celery -A canvas_tasks worker -P solo -Q <unique queue>`` from this folder; with
``cleanup <prefix> <db>`` it deletes the run's keys instead; with ``chordfail <queue>`` it
sends a chord whose header member fails and prints what Python's ``get()`` raises.
"""
import os
import sys

from celery import Celery

app = Celery(
    "canvas_tasks",
    broker=os.environ.get("CELERIAC_TEST_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERIAC_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)
prefix = os.environ.get("CELERIAC_TEST_PREFIX", "")
app.conf.broker_transport_options = {"global_keyprefix": prefix} if prefix else {}
app.conf.worker_hijack_root_logger = False
app.conf.worker_enable_remote_control = False


@app.task(name="pycanvas.add")
def add(x, y=0):
    return x + y


@app.task(name="pycanvas.tsum")
def tsum(numbers, counter=None):
    # Counts its own runs in the result backend's Redis, so the test sees "exactly once".
    if counter:
        app.backend.client.incr(counter)
        app.backend.client.expire(counter, 600)
    return sum(numbers)


@app.task(name="pycanvas.boom")
def boom(message):
    raise TypeError(message)


if __name__ == "__main__" and sys.argv[1:2] == ["chordfail"]:
    from celery import chord

    queue = sys.argv[2]
    r = chord(
        [add.s(1, 1).set(queue=queue), boom.si("x").set(queue=queue)],
        tsum.s().set(queue=queue),
    ).apply_async()
    # One line per get(): the exception's class and repr, as the test compares them.
    for follow_parents in (True, False):
        try:
            r.get(timeout=60, follow_parents=follow_parents)
            print("no error")
        except Exception as e:  # noqa: BLE001 - reporting whatever get() raises
            print(type(e).__name__, repr(e))

if __name__ == "__main__" and sys.argv[1:2] == ["cleanup"]:
    import redis

    key_prefix, db = sys.argv[2], int(sys.argv[3])
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    for key in client.scan_iter(match=key_prefix + "*", count=1000):
        client.delete(key)

if __name__ == "__main__" and sys.argv[1:2] == ["get"]:
    import redis

    value = redis.Redis(host="127.0.0.1", port=6379, db=int(sys.argv[3])).get(sys.argv[2])
    print(int(value or 0))
