"""An import guard for the GPU benchmark's smoke run: every module that is imported from a distribution the
device image lacks (ops/bench/gpu-image-packages.txt) and ops/bench/gpu-wheels.txt does not carry is
recorded, so a missing package shows on this machine, not on a lent GPU with minutes on the clock.

Only imports that run are recorded, not probes (`importlib.util.find_spec`), and only those made by the
project's code or a carried wheel's: what an image package imports, and what that imports, is the image's
business (its own dependencies are there at its own versions; its optional ones, absent, are skipped there). OPTIONAL names
the few packages this project's code and the wheels import only where they are installed (each import
guarded by `except ImportError`), with where. The guard sits first on `sys.meta_path`; the fleet's
processes install it too, through `sitecustomize` (ops/bench/guarded_site/, put on PYTHONPATH with the
log's path in BENCH_IMPORT_GUARD). Standard-library modules and the project's own packages pass.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE = HERE / "guarded_site"
LOG_ENV = "BENCH_IMPORT_GUARD"  # the file refused imports are appended to (one line each: pid, module, distribution)
LISTS = ("gpu-image-packages.txt", "gpu-wheels.txt")
OWN = {"api", "worker", "shared", "ops", "tests"}
OPTIONAL = {  # distribution: who imports it, inside `except ImportError`
    "flower": "api/cli/flower.py (guards Flower's metrics page in a Flower process); celery's CLI plugins",
    "tornado": "api/cli/flower.py, with flower",
    "pytz": "flower",
    "orjson": "fastapi (its ORJSONResponse, unused here)",
    "watchfiles": "uvicorn (--reload only)",
    "websockets": "uvicorn (its WebSocket protocol, unused here)",
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listed(listing: str) -> set[str]:
    """The distributions a list names (the image's packages, or the wheels carried to the device)."""
    names = set()
    for line in (HERE / listing).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(normalize(re.split(r"[=<>!~\[ ;]", line, maxsplit=1)[0]))
    return names


class _Recorded(importlib.abc.Loader):
    """A loader that records the module it runs, then runs it as its own loader would."""

    def __init__(self, loader, note) -> None:
        self._loader, self._note = loader, note

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._note()
        self._loader.exec_module(module)


class ImportGuard(importlib.abc.MetaPathFinder):
    """Records the imports of top-level modules whose distributions are not admitted."""

    def __init__(self, log_path: str) -> None:
        self._image, self._wheels = listed(LISTS[0]), listed(LISTS[1])
        self._admitted = self._image | self._wheels | set(OPTIONAL)
        self._image_side = self._image - self._wheels  # and what such packages import, as they import it
        self._owners = importlib.metadata.packages_distributions()
        self._log_path = log_path

    def _distributions(self, top: str) -> set[str]:
        return {normalize(name) for name in self._owners.get(top, ())}

    def find_spec(self, fullname, path, target=None):
        top = fullname.partition(".")[0]
        owners = self._distributions(top)
        if "." in fullname or top in sys.stdlib_module_names or top in OWN or not owners or owners & self._admitted:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Recorded(spec.loader, lambda: self._record(fullname, sorted(owners)))
                return spec
        return None

    def _record(self, module: str, owners: list[str]) -> None:
        importer = _importer()
        importer_owners = self._distributions(importer)
        if importer_owners and importer_owners <= self._image_side:
            self._image_side |= set(owners)
            return  # an image package's own import (or its dependencies'): the image holds its own versions
        with open(self._log_path, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {module} ({','.join(owners)}, imported by {importer})\n")


def _importer() -> str:
    """The top-level package of the code whose import statement is running (outside importlib and this guard)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("importlib", "_frozen_importlib", __name__)):
            return name.partition(".")[0]
        frame = frame.f_back
    return "?"


def install(log_path: str) -> None:
    """Guard this process and the Python processes it starts (through the environment)."""
    if not any(isinstance(finder, ImportGuard) for finder in sys.meta_path):
        sys.meta_path.insert(0, ImportGuard(log_path))
    os.environ[LOG_ENV] = log_path
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))


def refused(log_path: str) -> list[str]:
    """The distinct (module, distribution) imports recorded so far, by any guarded process."""
    if not os.path.exists(log_path):
        return []
    return sorted({line.split(" ", 1)[1].strip() for line in Path(log_path).read_text().splitlines() if line})
