"""A Python Celery app for celeriac's interop tests. Configured from the environment:
CELERIAC_TEST_BROKER, CELERIAC_TEST_BACKEND, CELERIAC_TEST_PREFIX (kombu global_keyprefix)."""
import os

from celery import Celery

app = Celery(
    "pytasks",
    broker=os.environ.get("CELERIAC_TEST_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERIAC_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)
prefix = os.environ.get("CELERIAC_TEST_PREFIX", "")
app.conf.broker_transport_options = {"global_keyprefix": prefix} if prefix else {}
app.conf.worker_hijack_root_logger = False
visibility = os.environ.get("CELERIAC_TEST_VISIBILITY")
if visibility:
    app.conf.broker_transport_options["visibility_timeout"] = float(visibility)


@app.task(name="py.mul")
def mul(x, y=1, **extra):
    return {"product": x * y, "extra": extra, "lang": "py"}


@app.task(name="py.call_ts")
def call_ts(name, args, queue):
    """Calls a celeriac task on `queue` and returns its result (blocks this solo worker)."""
    value = app.send_task(name, args=args, queue=queue).get(
        timeout=20, disable_sync_subtasks=False)
    return {"from_ts": value, "lang": "py"}


@app.task(name="shared.slow", bind=True, acks_late=True)
def shared_slow(self, ms):
    """The Python side of celeriac's shared.slow: reports who ran it, without sleeping."""
    return {"lang": "py", "redelivered": bool(self.request.delivery_info.get("redelivered"))}
