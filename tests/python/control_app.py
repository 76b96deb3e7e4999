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
