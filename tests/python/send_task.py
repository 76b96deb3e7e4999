"""Sends one task by name with Python Celery and prints its result as JSON.
Usage: send_task.py BROKER BACKEND QUEUE NAME ARGS_JSON KWARGS_JSON"""
import json
import sys

from celery import Celery

broker, backend, queue, name, args, kwargs = sys.argv[1:7]
app = Celery("send_task", broker=broker, backend=backend)
result = app.send_task(name, args=json.loads(args), kwargs=json.loads(kwargs), queue=queue)
value = result.get(timeout=30)
print(json.dumps({"result": value, "state": result.state}))
