"""Restart with exponential backoff, reset after a stable run (api/cli/supervision.py), on real short-lived processes."""

from __future__ import annotations

import sys

from api.cli import supervision
from api.cli.supervision import Child


def _dies_at_once() -> Child:
    return Child.spawn("flaky", [sys.executable, "-c", "raise SystemExit(3)"])


def test_a_dead_child_is_restarted_after_a_doubling_delay(capsys):
    child = _dies_at_once()
    child.process.wait()
    now = 1000.0
    delays = []
    for _ in range(4):
        child.supervise(now)  # notices the death, schedules the restart
        line = capsys.readouterr().err
        assert "flaky exited with code 3" in line
        delays.append(float(line.split("restarting it in ")[1].rstrip("s\n")))
        first = child.process
        child.supervise(now + delays[-1] - 0.01)
        assert child.process is first  # not yet due
        now += delays[-1]
        child.supervise(now)
        assert child.process is not first
        assert f"restarted flaky (pid {child.process.pid}, restart {child.restarts})" in capsys.readouterr().err
        child.process.wait()
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_the_delay_is_capped_and_starts_over_after_a_stable_run(capsys):
    child = _dies_at_once()
    child.process.wait()
    now = 0.0
    for _ in range(10):
        child.supervise(now)
        now += supervision.BACKOFF_MAX
        child.supervise(now)
        child.process.wait()
    child.supervise(now)
    assert f"restarting it in {supervision.BACKOFF_MAX:g}s" in capsys.readouterr().err.splitlines()[-1]
    now += supervision.BACKOFF_MAX
    child.supervise(now)
    child.process.wait()
    child.supervise(now + supervision.STABLE_SECONDS)  # it "ran" a stable period before dying
    assert f"restarting it in {supervision.BACKOFF_FIRST:g}s" in capsys.readouterr().err.splitlines()[-1]


def test_a_live_child_is_left_alone(capsys):
    child = Child.spawn("steady", [sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        child.supervise()
        assert child.restarts == 0 and capsys.readouterr().err == ""
    finally:
        child.process.kill()
        child.process.wait()
