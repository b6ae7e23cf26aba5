"""Layering: the core imports without jax or the Excel writers, and `perfmodel --help` stays
light. Each check runs in a fresh interpreter (this test process has imported plenty)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = ["perfmodel", "perfmodel.specs", "perfmodel.units", "perfmodel.engine",
        "perfmodel.formula", "perfmodel.ops", "perfmodel.roofline", "perfmodel.catalog",
        "perfmodel.analysis", "perfmodel.argspec"]
BLOCKED = ["jax", "jaxlib", "openpyxl", "xlsxwriter"]


def run_py(code: str) -> subprocess.CompletedProcess:
    # cwd = the repo, so the checkout's package is the one imported (as from a wheel)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", CORE)
def test_core_imports_with_jax_and_excel_writers_blocked(module):
    # sys.modules[name] = None makes any `import name` raise ImportError
    res = run_py(f"""
        import sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None
        import {module}
        print("ok")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_core_evaluates_a_workload_with_jax_blocked():
    res = run_py(f"""
        import sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None
        from perfmodel import catalog, engine
        js = engine.to_json(catalog.load_hardware("tpu-v4"), catalog.load_workload("course-attention"))
        print(len(js["ops"]))
    """)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > 0


def test_blocking_works():
    # the harness itself: a blocked module really cannot be imported (so the tests above
    # would fail if the core imported one)
    res = run_py("""
        import sys
        sys.modules["jax"] = None
        import jax
    """)
    assert res.returncode != 0 and "import of jax halted" in res.stderr


def test_help_does_not_import_jax_or_heavy_modules():
    res = run_py("""
        import json, sys
        from perfmodel.cli import main
        try:
            main(["--help"])
        except SystemExit as e:
            code = e.code
        heavy = ["jax", "pandas", "matplotlib", "openpyxl", "xlsxwriter", "scipy"]
        print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
    """)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["code"] == 0
    assert out["loaded"] == []


def test_help_importtime_has_no_jax():
    res = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "from perfmodel.cli import main; main(['--help'])"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    modules = [line.split("|")[-1].strip() for line in res.stderr.splitlines()
               if line.startswith("import time:")]
    assert "perfmodel.cli" in modules  # the log is the one we think it is
    assert not [m for m in modules if m == "jax" or m.startswith("jax.")]


def test_console_script_help():
    exe = Path(sys.executable).parent / "perfmodel"
    if not exe.exists():
        pytest.skip("perfmodel console script not installed next to this python")
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    assert "Exit status: 0 success, 2 bad input" in " ".join(res.stdout.split())
