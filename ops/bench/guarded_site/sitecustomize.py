"""Installs the GPU benchmark's import guard (ops/bench/import_guard.py) in every Python process that the
smoke run starts: this folder is put first on their PYTHONPATH, with the guard's log in BENCH_IMPORT_GUARD."""

import os

if os.environ.get("BENCH_IMPORT_GUARD"):
    from ops.bench.import_guard import install

    install(os.environ["BENCH_IMPORT_GUARD"])
