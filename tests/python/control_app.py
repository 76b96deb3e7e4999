"""A Celery app for the remote control and events interop tests.

Broker from CELERIAC_TEST_BROKER (default redis://127.0.0.1:6379/0); tasks go to the queue in
CELERIAC_TEST_QUEUE so that parallel test runs do not share work.
"""
import os
import time

from celery import Celery

app = Celery(
    "control_app",
    broker=os.environ.get("CELERIAC_TEST_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERIAC_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)
app.conf.task_default_queue = os.environ.get("CELERIAC_TEST_QUEUE", "celery")
app.conf.worker_hijack_root_logger = False


@app.task(name="py.add")
def add(x, y):
    return x + y


@app.task(name="py.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(name="py.request_stamps", bind=True)
def request_stamps(self, prev=None):
    # Celery 5.2 has no stamping, but its request context holds every message header, so a
    # 5.2 worker shows the stamps a celeriac sender wrote.
    req = self.request
    return {
        "prev": prev,
        "stamped_headers": getattr(req, "stamped_headers", None),
        "stamps": getattr(req, "stamps", None),
    }
