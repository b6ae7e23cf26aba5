"""Layering: the core imports without jax or the Excel writers, and `perfmodel --help` stays
light. Each check runs in a fresh interpreter (this test process has imported plenty)."""

from __future__ import annotations

import ast
import json
import re
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
        from perfmodel import catalog, engine, results
        js = results.to_json(catalog.load_hardware("tpu-v4"), catalog.load_workload("course-attention"))
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


# ---- the layer order of docs/architecture.md, every import included -------------------------

PKG = REPO / "perfmodel"
ROW = re.compile(r"^\|\s*(\d+)\s*\|([^|]*)\|")


def layer_table() -> dict[str, int]:
    """docs/architecture.md's module table: entry (``engine.py``, ``ops/``) -> layer."""
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Modules, in layer order", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            for entry in re.findall(r"`([^`]+)`", m.group(2)):
                out[entry] = int(m.group(1))
    return out


def entry_of(rel: str, table: dict[str, int]) -> str | None:
    """The table entry a package file (``ops/matmul.py``) belongs to."""
    if rel in table:
        return rel
    pkg = rel.split("/")[0] + "/"
    return pkg if "/" in rel and pkg in table else None


def module_file(name: str) -> Path | None:
    """perfmodel.x.y -> its file (a package's __init__.py), None outside the package."""
    if name != "perfmodel" and not name.startswith("perfmodel."):
        return None
    base = PKG.parent.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def imports_of(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import in the file (or in ``text`` as if it were that file), at
    any depth: function-level imports too."""
    package = list(path.relative_to(PKG.parent).parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:  # `from . import engine` imports the submodule engine
                sub = f"{mod}.{a.name}"
                out.append((node.lineno, sub if module_file(sub) else mod))
    return out


def import_graph():
    table = layer_table()
    edges, unlisted = [], []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        src = entry_of(rel, table)
        if src is None:
            unlisted.append(rel)
            continue
        for line, mod in imports_of(path):
            f = module_file(mod)
            if f is None:
                continue
            dst = entry_of(f.relative_to(PKG).as_posix(), table)
            edges.append((src, dst, f"perfmodel/{rel}:{line} imports {mod}"))
    return table, edges, unlisted


def test_the_table_is_read():
    # the harness: the table has the layers the checks below rely on
    table = layer_table()
    assert table["units.py"] < table["specs.py"] < table["engine.py"] < table["cli.py"]
    assert table["ops/"] < table["engine.py"] and "report/" in table


def test_every_module_is_in_the_layer_table():
    _, _, unlisted = import_graph()
    assert not unlisted, f"add these to docs/architecture.md's module table: {unlisted}"


def test_imports_go_only_to_the_same_layer_or_below():
    table, edges, _ = import_graph()
    upward = [why for src, dst, why in edges if dst is not None and table[dst] > table[src]]
    assert not upward, "imports against docs/architecture.md's layer order:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    _, edges, _ = import_graph()
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges:
        if dst is not None and dst != src:
            graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(n, path):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path + [n, m])}")
            if m not in state:
                visit(m, path + [n])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])


def test_the_checker_sees_function_level_imports():
    # an upward import hidden in a function (as specs once reached the model) is found and
    # placed in its layer; relative imports resolve against the file's package
    table = layer_table()
    probe = "def f():\n    if True:\n        from .model import expand_workload\n"
    assert imports_of(PKG / "specs.py", probe) == [(3, "perfmodel.model")]
    assert table[entry_of("model/__init__.py", table)] > table["specs.py"]
    probe = "def g():\n    from .. import engine\n    from ..ops.attention import X\n"
    assert imports_of(PKG / "ops" / "matmul.py", probe) == [
        (2, "perfmodel.engine"), (3, "perfmodel.ops.attention")]
    assert ("perfmodel.units" in {m for _, m in imports_of(PKG / "specs.py")})


EXCEL_LIBS = ("xlsxwriter", "openpyxl")
WORKBOOK_PKG = REPO / "perfmodel" / "report" / "workbook"


def _sources():
    return sorted((REPO / "perfmodel").rglob("*.py"))


def test_only_the_workbook_package_imports_the_excel_library():
    import ast

    bad = []
    for path in _sources():
        if WORKBOOK_PKG in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                    if n.split(".")[0] in EXCEL_LIBS]
    assert not bad, bad


# an Excel function call, or formula text (a leading '=') with an operator in it
_EXCEL_CALL = r"\b(?:SUM|SUMIFS?|MAX|MIN|IF|INDEX|MATCH|NA|ISBLANK|INT|ROUNDUP|ROUNDDOWN|AND|OR|SQRT|IFERROR)\("
_FORMULA_OP = r"^=.*[-+*/^<>&]"


def _string_literals(path):
    import ast

    tree = ast.parse(path.read_text())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings: prose
    for node in ast.walk(tree):
        if id(node) in docs:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts joined
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            yield node.lineno, text


def test_no_excel_formula_text_outside_the_formula_layer():
    """Every function and operator in a formula is rendered by perfmodel/formula.py; other
    modules write plain references (cells, ranges, defined names) only."""
    import re

    bad = []
    for path in _sources():
        if path.name == "formula.py" and path.parent.name == "perfmodel":
            continue
        for line, text in _string_literals(path):
            if re.search(_EXCEL_CALL, text) or re.search(_FORMULA_OP, text.strip()):
                bad.append(f"{path.relative_to(REPO)}:{line} {text[:60]!r}")
    assert not bad, bad


def test_formula_text_check_catches_a_formula():
    # the checks above would see the formulas the old workbook wrote by hand
    import re

    for text in ('=SUMIFS(H2:H9,B2:B9,"layer")', "={}/{}", '=IF({}<={},"yes","NO")', "=SUM({})"):
        assert re.search(_EXCEL_CALL, text) or re.search(_FORMULA_OP, text)
    assert not re.search(_EXCEL_CALL, "=Ops!H2") and not re.search(_FORMULA_OP, "=Ops!H2")
