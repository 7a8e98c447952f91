"""The jobs client's pure parts (the --wait progress line, one-line server errors) and what it imports."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.cli.jobs import _server_error, progress_line
from shared.job_schemas import JobProgress

REPO_ROOT = Path(__file__).resolve().parents[4]


def progress(completed=0, failed=0, total=10, pairs=0, total_pairs=100) -> JobProgress:
    return JobProgress(total_requests=total, completed_requests=completed, failed_requests=failed,
                       total_pairs=total_pairs, completed_pairs=pairs)  # fmt: skip


def test_a_job_that_has_not_started_has_an_empty_bar_and_no_eta():
    assert progress_line(progress(), 0.0) == (
        "[........................]   0% 0/10 requests  0/100 pairs  0.0 req/s  0.0 pairs/s  ETA --:--"
    )


def test_failed_requests_count_as_done_and_the_eta_follows_the_pair_rate():
    line = progress_line(progress(completed=4, failed=1, pairs=40), 4.0)
    # 5/10 requests, 40 pairs in 4 s = 10 pairs/s, 60 pairs left = 6 s
    assert line == "[############............]  50% 5/10 requests  40/100 pairs  1.2 req/s  10.0 pairs/s  ETA 0:06"


def test_rates_count_only_what_finished_since_the_first_poll():
    line = progress_line(progress(completed=6, pairs=60), 10.0, start=progress(completed=2, pairs=20))
    assert "0.4 req/s  4.0 pairs/s  ETA 0:10" in line


def test_while_no_pair_is_done_the_eta_follows_the_request_rate():
    line = progress_line(progress(failed=2), 2.0)  # two failed lines, no pairs yet
    assert "1.0 req/s  0.0 pairs/s  ETA 0:08" in line


def test_a_finished_job_has_a_full_bar_and_no_time_left():
    line = progress_line(progress(completed=10, pairs=100), 3.0, width=10)
    assert line.startswith("[##########] 100% 10/10 requests  100/100 pairs")
    assert line.endswith("ETA 0:00")


def test_large_jobs_have_thousands_separators_and_hours():
    line = progress_line(progress(completed=1_000, total=2_000_000, pairs=36_000, total_pairs=40_000_000), 36.0)
    assert "1,000/2,000,000 requests  36,000/40,000,000 pairs  27.8 req/s  1,000.0 pairs/s  ETA 11:06:04" in line


@pytest.mark.parametrize(
    "response, message",
    [
        (httpx.Response(404, json={"error": {"message": "no job 'x'", "type": "not_found_error", "code": 404}}),
         "no job 'x' (HTTP 404)"),
        (httpx.Response(409, json={"error": {"message": "job j is\nrunning", "type": "conflict_error", "code": 409}}),
         "job j is running (HTTP 409)"),
        (httpx.Response(502, text="<html>bad gateway</html>"), "Bad Gateway (HTTP 502)"),
    ],
)  # fmt: skip
def test_server_errors_become_one_line(response, message):
    assert str(_server_error(response)) == message


def test_the_command_loads_no_app_code_torch_or_worker():
    code = "import sys, api.cli.main; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    roots = {name.split(".")[0] for name in loaded.stdout.split()}
    assert not roots & {"fastapi", "starlette", "torch", "transformers", "celery", "worker"}
    assert "api.app" not in loaded.stdout.split()


@pytest.mark.parametrize("columns", [60, 80, 100, 160])
def test_the_progress_line_fits_the_terminal_and_keeps_rates_and_eta(columns):
    from api.cli.jobs import fitted_progress_line

    progress = JobProgress(total_requests=100_000, completed_requests=25_000, failed_requests=12,
                           total_pairs=2_000_000, completed_pairs=500_000)  # fmt: skip
    line = fitted_progress_line(progress, 100.0, None, columns)
    assert len(line) <= columns - 1
    if columns >= 80:
        assert "pairs/s" in line and "ETA" in line
    if columns >= 120:
        assert line.startswith("[#")


def test_a_submit_without_a_model_anywhere_names_the_option(tmp_path, capsys):
    from api.cli.main import main

    upload = tmp_path / "requests.jsonl"
    upload.write_text('{"query": {"text": "q"}, "passages": [{"text": "p"}]}\n')
    assert main(["jobs", "submit", str(upload), "--url", "http://127.0.0.1:9"]) == 1
    error = capsys.readouterr().err
    assert "--model" in error and len(error.strip().splitlines()) == 1
