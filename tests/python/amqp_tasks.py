"""A Python Celery app on RabbitMQ for celeriac's AMQP interop tests.
CELERIAC_TEST_BROKER (amqp URL) and CELERIAC_TEST_BACKEND (rpc:// by default)."""
import os

from celery import Celery

app = Celery(
    "amqp_tasks",
    broker=os.environ.get("CELERIAC_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("CELERIAC_TEST_BACKEND", "rpc://"),
)
app.conf.worker_hijack_root_logger = False


@app.task(name="py.amqp.add")
def add(x, y=0):
    return {"sum": x + y, "lang": "py"}
