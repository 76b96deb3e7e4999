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


@app.task(name="py.mul")
def mul(x, y=1, **extra):
    return {"product": x * y, "extra": extra, "lang": "py"}
