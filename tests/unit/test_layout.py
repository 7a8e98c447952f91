"""The layout rules (ARCHITECTURE.md section 2): import contracts, module sizes, and what sits at the top of api/ and ops/."""

from __future__ import annotations

import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("api", "worker", "shared")
MAX_MODULE_LINES = 400
CONTRACTS = {
    "shared-imports-no-product-package",
    "worker-imports-no-api-or-ops",
    "api-imports-no-worker-or-ops",
    "core-is-transport-free",
    "transports-are-siblings",
    "only-cli-imports-cli",
}


def test_every_package_boundary_is_a_contract():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert {contract["id"] for contract in config["contracts"]} == CONTRACTS


def test_the_imports_keep_every_contract(monkeypatch):
    monkeypatch.chdir(ROOT)  # import-linter reads pyproject.toml and finds the packages from here
    monkeypatch.syspath_prepend(str(ROOT))
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_no_product_module_is_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_api_keeps_at_most_four_modules_at_its_top():
    assert len(list((ROOT / "api").glob("*.py"))) <= 4


def test_ops_keeps_at_most_four_files_at_its_top():
    files = [path.name for path in (ROOT / "ops").iterdir() if path.is_file()]
    assert len(files) <= 4, files
