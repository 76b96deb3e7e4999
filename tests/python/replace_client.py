"""A Python Celery client for celeriac's replace tests: sends each call by name and waits on
its id, printing the results as JSON (one list, in call order).

Usage: replace_client.py BROKER BACKEND PREFIX CALLS_JSON
CALLS_JSON: [{"name": ..., "args": [...], "queue": ...}, ...]
"""
import json
import sys

from celery import Celery

broker, backend, prefix, calls = sys.argv[1:5]
app = Celery("replace_client", broker=broker, backend=backend)
app.conf.broker_transport_options = {"global_keyprefix": prefix} if prefix else {}
out = []
for call in json.loads(calls):
    result = app.send_task(call["name"], args=call.get("args", []), queue=call["queue"])
    value = result.get(timeout=30)
    out.append({"id": result.id, "result": value, "state": result.state})
print(json.dumps(out))
