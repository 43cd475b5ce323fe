#!/usr/bin/env python3
"""Replay what the original platform's simulated checkout services send to /ingest/logs.

Standard library only. Each simulated checkout is one trace: a few INFO logs and, for a share of
them, an ERROR log, with timestamps from Python's datetime.isoformat() (which carry +00:00),
uuid4 signal ids and a small attributes dict; every log is sent twice, as a retrying client
would, to show that a resend is stored once.

    python3 examples/replay_legacy.py --url http://127.0.0.1:8000 --checkouts 20

Prints one JSON line with the counts and exits 1 if any request was not answered 202.
"""

import argparse
import json
import random
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

SERVICES = ["api-gateway", "checkout", "payments", "inventory"]


def checkout_logs(failing):
    trace_id = uuid.uuid4().hex
    start = datetime.now(timezone.utc)
    steps = [("api-gateway", "INFO", "received POST /checkout"),
             ("inventory", "INFO", "reserved 2 items"),
             ("payments", "INFO", "authorizing card")]
    if failing:
        steps.append(("payments", "ERROR", "payment failed: card declined by issuer"))
    else:
        steps.append(("checkout", "INFO", "order confirmed"))
    for i, (service, level, message) in enumerate(steps):
        yield {
            "signal_id": str(uuid.uuid4()),
            "trace_id": trace_id,
            "service_name": service,
            "timestamp": (start + timedelta(milliseconds=37 * i)).isoformat(),
            "level": level,
            "message": message,
            "attributes": {"user_id": f"u-{random.randint(1, 500)}", "amount": 49.99},
        }


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--checkouts", type=int, default=20)
    parser.add_argument("--failure-rate", type=float, default=0.25)
    args = parser.parse_args()

    sent = accepted = 0
    unique = 0
    for n in range(args.checkouts):
        failing = n < max(1, int(args.checkouts * args.failure_rate))
        for log in checkout_logs(failing):
            unique += 1
            for _ in range(2):  # a client retry: same signal_id again
                sent += 1
                status = post(f"{args.url}/ingest/logs", log)
                accepted += status == 202
    print(json.dumps({"sent": sent, "accepted": accepted, "unique_signals": unique}))
    raise SystemExit(0 if accepted == sent else 1)


if __name__ == "__main__":
    main()
