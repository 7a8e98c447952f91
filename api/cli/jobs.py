"""`rerank-fleet jobs ...`: an HTTP client of a running API's batch-job routes (API.md section 4).

Every failure is one line on stderr and exit code 1; `submit --wait` draws a progress line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from shared.job_schemas import FINISHED, Job, JobList, JobProgress

DEFAULT_URL = "http://127.0.0.1:8000"
JOBS = "/v1/ranking/jobs"
POLL_INTERVAL_S = 1.0


class CliError(Exception):
    """A failure told in one line: `rerank-fleet: <message>`, exit code 1."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _server_error(response: httpx.Response) -> CliError:
    """The error envelope's message and the HTTP status; a body of another shape gives the reason phrase."""
    response.read()
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.reason_phrase or "unexpected response"
    return CliError(f"{_one_line(message)} (HTTP {response.status_code})")


def job_path(job_id: str) -> str:
    return f"{JOBS}/{quote(job_id, safe='')}"


class JobsClient:
    """The job routes of one API, with the key sent as `Authorization: Bearer <key>`."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[Any, int]:
        """The JSON body and status of a successful answer; CliError for anything else."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach {self.url}: {_one_line(exc) or type(exc).__name__}") from None
        if response.status_code >= 400:
            raise _server_error(response)
        try:
            return response.json(), response.status_code
        except ValueError:
            raise CliError(f"{self.url} answered {method} {path} with something other than JSON") from None

    def submit(self, path: Path, model: str | None, idempotency_key: str | None) -> tuple[dict, bool]:
        """Upload an NDJSON file, streamed from disk; the job, and whether it is new."""
        headers = {"Content-Type": "application/x-ndjson"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            body = path.open("rb")
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from None
        with body:
            params = {"model": model} if model else {}
            data, status = self.call("POST", JOBS, content=body, headers=headers, params=params)
        return data, status == 202

    def job(self, job_id: str) -> Job:
        return Job.model_validate(self.call("GET", job_path(job_id))[0])

    def stream_results(self, job_id: str, sink: Callable[[bytes], object]) -> None:
        """Stream a finished job's NDJSON results into `sink`, chunk by chunk."""
        try:
            with self._http.stream("GET", job_path(job_id) + "/results") as response:
                if response.status_code >= 400:
                    raise _server_error(response)
                for chunk in response.iter_bytes():
                    sink(chunk)
        except httpx.TransportError as exc:
            raise CliError(f"results of {job_id} cut off: {_one_line(exc) or type(exc).__name__}") from None


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(progress: JobProgress, elapsed_s: float, start: JobProgress | None = None, width: int = 24) -> str:
    """`[######..] 25% 12/48 requests  300/1,200 pairs  4.0 req/s  100.0 pairs/s  ETA 0:09`.

    Requests count completed and failed ones; rates count what finished since `start` (the first poll)
    over `elapsed_s`; the ETA follows the pair rate (the request rate while no pair is done).
    """
    done, total = progress.completed_requests + progress.failed_requests, progress.total_requests
    fraction = min(1.0, done / total) if total else 1.0
    filled = int(fraction * width)
    base_requests = start.completed_requests + start.failed_requests if start else 0
    base_pairs = start.completed_pairs if start else 0
    request_rate = max(0, done - base_requests) / elapsed_s if elapsed_s > 0 else 0.0
    pair_rate = max(0, progress.completed_pairs - base_pairs) / elapsed_s if elapsed_s > 0 else 0.0
    if done >= total:
        eta: float | None = 0.0
    elif pair_rate > 0:
        eta = max(0, progress.total_pairs - progress.completed_pairs) / pair_rate
    else:
        eta = (total - done) / request_rate if request_rate > 0 else None
    bar = f"[{'#' * filled}{'.' * (width - filled)}] " if width > 0 else ""
    return (
        f"{bar}{fraction:4.0%} {done:,}/{total:,} requests  "
        f"{progress.completed_pairs:,}/{progress.total_pairs:,} pairs  "
        f"{request_rate:,.1f} req/s  {pair_rate:,.1f} pairs/s  ETA {_clock(eta)}"
    )


def fitted_progress_line(progress: JobProgress, elapsed_s: float, start: JobProgress | None, columns: int) -> str:
    """The progress line in `columns` - 1 characters: the bar shrinks (or goes) first, so that the rates and the
    ETA stay; only a terminal too narrow for those cuts the line."""
    bare = progress_line(progress, elapsed_s, start, width=0)
    room = columns - 1 - len(bare) - 3  # "[" + bar + "] "
    if room >= 4:
        return progress_line(progress, elapsed_s, start, width=min(24, room))
    shorter = bare.replace(" requests  ", " req  ")
    if len(shorter) > columns - 1:  # then the pair counts go; the rates and the ETA stay
        counts = f"{progress.completed_pairs:,}/{progress.total_pairs:,} pairs  "
        shorter = shorter.replace(counts, "")
    return shorter[: columns - 1]


def wait_for_job(client: JobsClient, job: Job, out: TextIO, interval_s: float = POLL_INTERVAL_S) -> Job:
    """Poll until the job finishes, redrawing the progress line on `out` (a new line per change if not a TTY)."""
    tty, started, start, shown = out.isatty(), time.monotonic(), job.progress, None
    while True:
        if tty:  # fitted to the terminal's width, or \r would redraw only the last of the wrapped lines
            columns = shutil.get_terminal_size().columns
            out.write(f"\r{fitted_progress_line(job.progress, time.monotonic() - started, start, columns)}\x1b[K")
        elif shown != job.progress:
            out.write(progress_line(job.progress, time.monotonic() - started, start) + "\n")
        shown = job.progress
        out.flush()
        if job.status in FINISHED:
            break
        time.sleep(interval_s)
        job = client.job(job.id)
    p = job.progress
    out.write(("\n" if tty else "") + f"job {job.id} {job.status}: {p.completed_requests:,} completed, "
              f"{p.failed_requests:,} failed in {_clock(time.monotonic() - started)}\n")  # fmt: skip
    if job.error:
        out.write(f"job error: {_one_line(job.error.message)}\n")
    return job


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def first_line_model(path: Path) -> str | None:
    """The `model` of the file's first request line, if it names one."""
    try:
        with path.open("rb") as upload:
            for line in upload:
                if line.strip():
                    value = json.loads(line)
                    return value.get("model") if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None  # the upload itself reports what is wrong
    return None


def _submit(client: JobsClient, args: argparse.Namespace) -> int:
    if not args.model and args.file.is_file() and not first_line_model(args.file):
        raise CliError(f"the first line of {args.file} names no model: pass --model MODEL (GET /v1/models lists them)")
    data, created = client.submit(args.file, args.model, args.idempotency_key)
    job = Job.model_validate(data)
    if not created:
        print(f"rerank-fleet: job {job.id} already exists for this Idempotency-Key", file=sys.stderr)
    if not args.json:
        print(job.id, flush=True)  # before any waiting, so that a script has the id at once
    if not args.wait:
        if args.json:
            print_json(data)
        return 0
    try:
        job = wait_for_job(client, job, sys.stderr)
    except KeyboardInterrupt:
        print(f"\nrerank-fleet: stopped waiting; job {job.id} goes on (`rerank-fleet jobs cancel {job.id}` stops it)",
              file=sys.stderr)  # fmt: skip
        return 130
    if args.json:
        print_json(job.model_dump())
    return 0 if job.status == "succeeded" else 1


def _status(client: JobsClient, args: argparse.Namespace) -> int:
    print_json(client.call("GET", job_path(args.job_id))[0])
    return 0


def _cancel(client: JobsClient, args: argparse.Namespace) -> int:
    data = client.call("DELETE", job_path(args.job_id))[0]
    if data.get("status") != "cancelled":
        print(f"rerank-fleet: job {args.job_id} is already {data.get('status')}; nothing to cancel", file=sys.stderr)
    print_json(data)
    return 0


def _list(client: JobsClient, args: argparse.Namespace) -> int:
    data = client.call("GET", JOBS, params={"limit": args.limit})[0]
    if args.json:
        print_json(data)
        return 0
    print(f"{'ID':<34} {'STATUS':<10} {'MODEL':<28} {'REQUESTS':>15}  CREATED")
    for job in JobList.model_validate(data).data:
        requests = f"{job.progress.completed_requests + job.progress.failed_requests:,}/{job.progress.total_requests:,}"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at))
        print(f"{job.id:<34} {job.status:<10} {job.model:<28} {requests:>15}  {created}")
    return 0


def _results(client: JobsClient, args: argparse.Namespace) -> int:
    if args.output is None:
        client.stream_results(args.job_id, sys.stdout.buffer.write)
        sys.stdout.flush()
        return 0
    partial = args.output.with_name(args.output.name + ".part")  # the real name only once complete
    try:
        with partial.open("wb") as sink:
            client.stream_results(args.job_id, sink.write)
        os.replace(partial, args.output)
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"rerank-fleet: results of {args.job_id} written to {args.output}", file=sys.stderr)
    return 0


def add_jobs_parser(commands: argparse._SubParsersAction) -> None:
    """Register `jobs` and its sub-commands under the `rerank-fleet` parser."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", default=os.environ.get("RERANK_URL") or DEFAULT_URL,
                        help=f"the API's base URL (RERANK_URL, default {DEFAULT_URL})")  # fmt: skip
    server.add_argument("--api-key", default=os.environ.get("RERANK_API_KEY") or None,
                        help="sent as Authorization: Bearer <key>; a command line is visible to every user of "
                        "the machine (ps): prefer --api-key-file or RERANK_API_KEY")  # fmt: skip
    server.add_argument("--api-key-file", type=Path, default=os.environ.get("RERANK_API_KEY_FILE") or None,
                        help="a file whose first line is the API key (RERANK_API_KEY_FILE); --api-key and "
                        "RERANK_API_KEY win over it")  # fmt: skip
    jobs = commands.add_parser("jobs", help="submit, follow and fetch the batch ranking jobs of a running API")
    actions = jobs.add_subparsers(dest="jobs_command", required=True)

    def action(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, parents=[server], help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser

    submit = action("submit", _submit, "upload an NDJSON file as a job (streamed from disk); prints the job id")
    submit.add_argument("file", type=Path, help="one /v1/ranking body per line, each with an optional custom_id")
    submit.add_argument("--model", help="the job's model, for lines that do not name one")
    submit.add_argument("--wait", action="store_true", help="follow the job to its end; exit 1 unless it succeeded")
    submit.add_argument("--idempotency-key", help="submitting again with the same key returns the same job")
    submit.add_argument("--json", action="store_true", help="print the job JSON, not its id (the final one with --wait)")
    action("status", _status, "print a job's JSON: status and progress").add_argument("job_id")
    results = action("results", _results, "stream a finished job's NDJSON results, one line per request, in order")
    results.add_argument("job_id")
    results.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    action("cancel", _cancel, "cancel what has not run yet; prints the job JSON").add_argument("job_id")
    listing = action("list", _list, "the most recent jobs, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (1-100, default 20)")
    listing.add_argument("--json", action="store_true", help="print the list JSON instead of a table")


def _key_from_file(path: Path | None) -> str | None:
    """The first line of `path` (--api-key-file); None without one; CliError if it cannot be read or is empty."""
    if path is None:
        return None
    try:
        lines = path.read_text().strip().splitlines()
    except OSError as exc:
        raise CliError(f"cannot read the API key file {path}: {exc.strerror}") from None
    if not lines or not lines[0].strip():
        raise CliError(f"the API key file {path} is empty")
    return lines[0].strip()


def run_jobs(args: argparse.Namespace) -> int:
    """Run one parsed `jobs` sub-command; returns the exit code."""
    client = None
    try:
        client = JobsClient(args.url, args.api_key or _key_from_file(args.api_key_file))
        return args.handler(client, args)
    except CliError as exc:
        print(f"rerank-fleet: {exc}", file=sys.stderr)
    except ValidationError:
        print(f"rerank-fleet: {args.url} did not answer with a batch job; is it a rerank-fleet API?", file=sys.stderr)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        print(f"rerank-fleet: {_one_line(exc) or type(exc).__name__}", file=sys.stderr)
    except BrokenPipeError:  # e.g. `results | head`: the reader has gone; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        print("\nrerank-fleet: interrupted", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    return 1
