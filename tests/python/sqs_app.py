"""Python Celery over SQS (kombu 5.2's SQS transport: boto3 + pycurl) for celeriac's SQS
interop tests, pointed at the local emulator by the broker URL's host, as kombu reads it.
Environment: CELERIAC_SQS_BROKER (sqs://KEY:SECRET@127.0.0.1:PORT), CELERIAC_TEST_BACKEND,
CELERIAC_SQS_PREFIX (queue_name_prefix).

Usage: sqs_app.py send QUEUE NAME ARGS_JSON KWARGS_JSON [COUNTDOWN]  -> prints the result
       sqs_app.py sendmany QUEUE NAME ARGS_LIST_JSON   -> sends all, then prints the results
       sqs_app.py worker QUEUE                                        -> runs a solo worker
"""
import json
import os
import sys

from celery import Celery

app = Celery(
    "sqs_app",
    broker=os.environ["CELERIAC_SQS_BROKER"],
    backend=os.environ.get("CELERIAC_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)
app.conf.broker_transport_options = {
    "region": "us-east-1",
    "queue_name_prefix": os.environ.get("CELERIAC_SQS_PREFIX", ""),
    # local-aws-sqs answers a long poll only when the wait ends or MaxNumberOfMessages arrive.
    "wait_time_seconds": 1,
    "visibility_timeout": 60,
}
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


@app.task(name="py.mul")
def mul(x, y=1, **extra):
    return {"product": x * y, "extra": extra, "lang": "py"}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "send":
        queue, name, args, kwargs = sys.argv[2:6]
        options = {"queue": queue}
        if len(sys.argv) > 6:
            options["countdown"] = float(sys.argv[6])
        result = app.send_task(name, args=json.loads(args), kwargs=json.loads(kwargs), **options)
        value = result.get(timeout=60)
        print(json.dumps({"id": result.id, "result": value, "state": result.state}))
    elif mode == "sendmany":
        queue, name, arg_lists = sys.argv[2:5]
        results = [app.send_task(name, args=a, queue=queue) for a in json.loads(arg_lists)]
        print(json.dumps({"results": [r.get(timeout=60) for r in results]}))
    elif mode == "worker":
        app.worker_main([
            "worker", "-Q", sys.argv[2], "-P", "solo", "-c", "1", "--without-heartbeat",
            "--without-gossip", "--without-mingle", "-n", f"py-{os.getpid()}@%h",
            "--loglevel", "WARNING",
        ])
