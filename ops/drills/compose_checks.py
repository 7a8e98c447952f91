"""The checks of ops/drills/compose.sh that need more than curl, with the standard library only (the drill runs
them with the machine's python3, before any virtual environment exists).

  python3 ops/drills/compose_checks.py worker-kill --url URL --key KEY --model ID --container ID
      Ranking requests from several clients without pause; the worker container's main process killed
      (SIGKILL from the host, a crash as Docker sees one) while requests are in flight; the clients go on until
      Docker has restarted the container and its new worker serves. (`docker kill` itself tells dockerd that
      the container was stopped on purpose: its restart policy then does not restart it.)
      Passes when every answer is 200 or 503 (503 only while no worker is left), none is 504, and a request
      sent after the restart is answered 200 by a worker of a new name. Prints the figures as JSON.
  python3 ops/drills/compose_checks.py job-submit|job-wait ...
      The batch job that must survive `docker compose down` and `up`: submitted while the worker is stopped,
      then waited for and its results read.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

CLIENTS = 6
PASSAGES = 64  # long enough that a request is still being scored when the worker dies
WORDS = "the quick brown fox jumps over a lazy dog while the model scores each passage against the query".split()


def _request(url: str, key: str, method: str = "GET", body: dict | None = None, timeout: float = 120) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b"no answer: connection failed"  # 0 is no HTTP status: counted as a failure where it matters


def ranking_body(model: str, seed: int) -> dict:
    passages = [{"text": " ".join(WORDS[(seed + i + j) % len(WORDS)] for j in range(120))} for i in range(PASSAGES)]
    return {"model": model, "query": {"text": "which passage is about a fox"}, "passages": passages, "truncate": "END"}


def _worker_names(container: str) -> list[str]:
    """Celery names the worker container has served under (its log's "serving ... as NAME" lines), in order."""
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
    names = []
    for line in (logs.stdout + logs.stderr).splitlines():
        if " as rerank-" in line and "serving" in line:
            name = line.split(" as ", 1)[1].split()[0]
            if name not in names:
                names.append(name)
    return names


def worker_kill(args: argparse.Namespace) -> int:
    url = f"{args.url}/v1/ranking"
    answers: list[tuple[float, float, int]] = []  # (sent, answered, status), times since the start
    stop = threading.Event()
    start = time.monotonic()

    def client(number: int) -> None:
        seed = number
        while not stop.is_set():
            sent = time.monotonic() - start
            status, _ = _request(url, args.key, "POST", ranking_body(args.model, seed), timeout=args.deadline + 30)
            answers.append((sent, time.monotonic() - start, status))
            seed += CLIENTS
            if status == 503:
                time.sleep(0.2)  # no worker: the answer came at once; do not spin

    names_before = _worker_names(args.container)
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(args.kill_after)
    killed_at = time.monotonic() - start
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", args.container],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    os.kill(int(pid), signal.SIGKILL)
    # Go on until a request sent after the kill has been answered 200 (a new worker serves), then a little more.
    served_again = None
    while time.monotonic() - start < killed_at + args.deadline + 30:
        late = [a for a in answers if a[0] > killed_at and a[2] == 200]
        if late:
            served_again = min(a[1] for a in late)
            break
        time.sleep(0.5)
    if served_again is not None:
        time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(args.deadline + 40)
    in_flight = [a for a in answers if a[0] < killed_at < a[1]]
    counts = {str(code): sum(1 for a in answers if a[2] == code) for code in sorted({a[2] for a in answers})}
    restarts = subprocess.run(["docker", "inspect", "-f", "{{.RestartCount}}", args.container],
                              capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    names_after = _worker_names(args.container)
    report = {
        "requests": len(answers), "answers": counts,
        "in_flight_at_kill": len(in_flight),
        "in_flight_answers": {str(c): sum(1 for a in in_flight if a[2] == c) for c in sorted({a[2] for a in in_flight})},
        "slowest_in_flight_s": round(max((a[1] - killed_at for a in in_flight), default=0.0), 1),
        "serving_again_after_s": None if served_again is None else round(served_again - killed_at, 1),
        "restart_count": restarts, "worker_names": names_after or names_before,
    }  # fmt: skip
    print(json.dumps(report))
    failures = []
    if not in_flight:
        failures.append("no request was in flight when the worker was killed")
    if set(counts) - {"200", "503"}:
        failures.append(f"answers other than 200 and 503: {counts}")
    if served_again is None:
        failures.append("no request sent after the kill was answered 200: no new worker serves")
    if restarts in ("", "0"):
        failures.append("Docker did not restart the worker container")
    if len(names_after) < 2 or names_after[-1] in names_before:
        failures.append(f"the restarted worker did not register under a new name: {names_after}")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def job_submit(args: argparse.Namespace) -> int:
    body = {"model": args.model, "requests": [
        {"custom_id": f"r{n}", "query": {"text": "which passage is about a fox"},
         "passages": [{"text": "a fox jumps"}, {"text": "a dog sleeps"}, {"text": "rain falls"}]} for n in range(args.requests)
    ]}  # fmt: skip
    status, raw = _request(f"{args.url}/v1/ranking/jobs", args.key, "POST", body, timeout=30)
    job = json.loads(raw)
    if status != 202 or job.get("status") != "queued":
        print(f"FAIL: job submission answered {status}: {raw[:300]!r}", file=sys.stderr)
        return 1
    print(job["id"])
    return 0


def job_wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    job: dict = {}
    while time.monotonic() < deadline:
        status, raw = _request(f"{args.url}/v1/ranking/jobs/{args.job}", args.key, timeout=10)
        if status == 0:  # the API is not listening yet
            time.sleep(1)
            continue
        if status != 200:
            print(f"FAIL: the job answered {status}: {raw[:300]!r} (lost across down/up?)", file=sys.stderr)
            return 1
        job = json.loads(raw)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    status, raw = _request(f"{args.url}/v1/ranking/jobs/{args.job}/results", args.key, timeout=30)
    lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()] if status == 200 else []
    answered = sum(1 for line in lines if "response" in line)
    print(json.dumps({"status": job.get("status"), "progress": job.get("progress"), "results": len(lines), "answered": answered}))
    if job.get("status") != "succeeded" or answered != args.requests:
        print(f"FAIL: job {args.job} did not finish with {args.requests} answers after down/up", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("worker-kill", "job-submit", "job-wait"):
        command = commands.add_parser(name)
        command.add_argument("--url", required=True)
        command.add_argument("--key", required=True)
        command.add_argument("--model", required=True)
        command.add_argument("--requests", type=int, default=5)
    commands.choices["worker-kill"].add_argument("--container", required=True)
    commands.choices["worker-kill"].add_argument("--kill-after", type=float, default=4.0)
    commands.choices["worker-kill"].add_argument("--deadline", type=float, default=60.0, help="the API's RERANK_REQUEST_TIMEOUT")
    commands.choices["job-wait"].add_argument("--job", required=True)
    commands.choices["job-wait"].add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    handler = {"worker-kill": worker_kill, "job-submit": job_submit, "job-wait": job_wait}[args.command]
    sys.exit(handler(args))


if __name__ == "__main__":
    main()
