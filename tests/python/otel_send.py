"""Sends obs.add(2, 3) as a Python client instrumented by opentelemetry-instrumentation-celery
would: W3C traceparent and tracestate in the message headers. Needs no OTel library.

Usage: otel_send.py BROKER_URL KEYPREFIX QUEUE TASK_ID TRACEPARENT
"""
import json
import sys

from celery import Celery

url, prefix, queue, task_id, traceparent = sys.argv[1:6]
app = Celery("otel", broker=url)
app.conf.broker_transport_options = {"global_keyprefix": prefix} if prefix else {}
app.send_task("obs.add", args=[2], kwargs={"y": 3}, queue=queue, task_id=task_id,
              headers={"traceparent": traceparent, "tracestate": "py=1"})
print(json.dumps({"sent": task_id}))
