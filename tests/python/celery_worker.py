"""A Celery 5.4 worker standing in for the analysis pipeline's, in the integration tests.

Same broker settings as the pipeline (REDIS_URL as broker and result backend, JSON only, UTC,
prefetch 1) and a task registered under exactly the name "analyze_trace(trace_id)" that, instead
of analysing, appends one JSON line per run to $PROBE_JSONL:

    {"trace_id", "task_id", "eta", "received_at", "retries", "redelivered", "routing_key"}

received_at is when the task body started (UTC), so "received_at >= eta" shows the ETA was kept.

    REDIS_URL=redis://127.0.0.1:6379/3 PROBE_JSONL=/tmp/out.jsonl \\
        python -m celery -A celery_worker worker --pool solo -Q celery
"""
import json
import os
from datetime import datetime, timezone

from celery import Celery

REDIS_URL = os.environ["REDIS_URL"]
PROBE_JSONL = os.environ["PROBE_JSONL"]

app = Celery("prodsentinel-test-worker", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    timezone="UTC",
    enable_utc=True,
    task_track_started=True,
    task_time_limit=300,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)


@app.task(name="analyze_trace", bind=True, max_retries=3)
def analyze_trace(self, trace_id: str):
    request = self.request
    eta = request.eta.isoformat() if isinstance(request.eta, datetime) else request.eta
    line = {
        "trace_id": trace_id,
        "task_id": request.id,
        "eta": eta,
        "received_at": datetime.now(timezone.utc).isoformat(),
        "retries": request.retries,
        "redelivered": bool((request.delivery_info or {}).get("redelivered")),
        "routing_key": (request.delivery_info or {}).get("routing_key"),
    }
    with open(PROBE_JSONL, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    return {"status": "ok", "trace_id": trace_id}
