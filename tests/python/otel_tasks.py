"""A Python Celery worker app for tests/observe_test.ts: its task returns the trace context
its request carries (message headers become request attributes, which is where
opentelemetry-instrumentation-celery reads traceparent). Configured from the environment:
CELERIAC_TEST_BROKER, CELERIAC_TEST_BACKEND, CELERIAC_TEST_PREFIX."""
import os

from celery import Celery

app = Celery(
    "otel_tasks",
    broker=os.environ.get("CELERIAC_TEST_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("CELERIAC_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)
prefix = os.environ.get("CELERIAC_TEST_PREFIX", "")
app.conf.broker_transport_options = {"global_keyprefix": prefix} if prefix else {}
app.conf.worker_hijack_root_logger = False


@app.task(name="py.trace_context", bind=True)
def trace_context(self):
    return {
        "traceparent": getattr(self.request, "traceparent", None),
        "tracestate": getattr(self.request, "tracestate", None),
    }
