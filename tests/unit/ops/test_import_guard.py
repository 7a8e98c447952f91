"""The GPU benchmark's import guard (ops/bench/import_guard.py): a package the device lacks shows here."""

from __future__ import annotations

import os
import subprocess
import sys

from ops.bench.import_guard import SITE, listed

CHECK = """
import ops.bench.import_guard as guard
guard.LISTS = (guard.LISTS[0], "{wheels}")
guard.install({log!r})
import ijson, pydantic  # ijson: a wheel the fleet needs (batch-job uploads); pydantic: one the list still carries
"""


def test_an_import_the_device_cannot_satisfy_is_recorded_and_one_it_can_is_not(tmp_path):
    wheels = tmp_path / "wheels.txt"
    wheels.write_text("\n".join(name for name in sorted(listed("gpu-wheels.txt")) if name != "ijson") + "\n")
    log = tmp_path / "guard.log"
    code = CHECK.format(wheels=os.path.relpath(wheels, SITE.parent), log=str(log))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=SITE.parent.parent.parent)
    recorded = log.read_text()
    assert "ijson (ijson, imported by __main__)" in recorded
    assert "pydantic" not in recorded


def test_the_wheel_list_pins_every_wheel_and_names_none_the_image_has_without_cause():
    image, wheels = listed("gpu-image-packages.txt"), listed("gpu-wheels.txt")
    assert wheels & image == {"grpcio", "protobuf", "typing-extensions"}  # carried for their versions
    lines = [line for line in (SITE.parent / "gpu-wheels.txt").read_text().splitlines() if line and line[0] != "#"]
    assert all("==" in line for line in lines) and len(lines) == len(wheels)
