"""Every example in the README works as written.

Shell blocks run with bash in a fresh directory, in README order (a later block may use what an
earlier one wrote, as a reader following along would), each must exit 0; ``make`` lines are
left to the Makefile. A block right after ``<!-- slow -->`` needs jax and minutes: it runs only
with ``-m slow``. YAML blocks load as the spec they show; Python blocks run. ``my-*.yaml``
placeholders are the README's own ``<!-- file: NAME -->`` blocks, or fixtures below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from perfmodel.errors import SpecError
from perfmodel.specs import Hardware, load_model

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_CHARS = 15_000
SHELL = {"bash", "sh", "shell", "console"}
MARK = re.compile(r"^<!--\s*(slow|file:\s*(\S+))\s*-->$")

# placeholders the README's commands name but does not spell out
FIXTURES = {
    # an fp32 workload for the CPU calibration (bf16 is emulated on CPU)
    "my-fp32-workload.yaml": textwrap.dedent("""\
        name: my-fp32-workload
        ops:
          - {name: proj, kind: matmul, m: 512, k: 1024, n: 1024, dtype: fp32}
          - {name: act, kind: elementwise, shape: [512, 1024], inputs: 1, outputs: 1, dtype: fp32}
    """),
}


@dataclass
class Block:
    lang: str
    text: str
    line: int            # 1-based line of the opening fence
    slow: bool = False
    file: str | None = None


def readme_blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).splitlines()
    out, i, marker = [], 0, None
    while i < len(lines):
        line = lines[i].strip()
        m = MARK.match(line)
        if m:
            marker = m
        elif line.startswith("```"):
            lang, start, body = line[3:].strip().lower(), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(lang, "\n".join(body) + "\n", start,
                             slow=bool(marker and marker.group(1) == "slow"),
                             file=marker.group(2) if marker else None))
            marker = None
        elif line:
            marker = None  # a marker applies to the block right after it
        i += 1
    return out


def commands(block: Block) -> str:
    """The block as a script without its `make` lines (continuations kept)."""
    return "\n".join(ln for ln in block.text.splitlines() if not ln.lstrip().startswith("make "))


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\bmy-[\w-]*\.yaml\b", text))


def workdir(tmp: Path) -> Path:
    """A directory laid out as a checkout after `make`: .venv/bin/perfmodel (this interpreter's
    package) and the placeholder files."""
    exe = tmp / ".venv" / "bin" / "perfmodel"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!/bin/sh\nexec '{sys.executable}' -c "
                   f"'import sys; from perfmodel.cli import main; sys.exit(main())' \"$@\"\n")
    exe.chmod(0o755)
    for b in readme_blocks():
        if b.file:
            (tmp / b.file).write_text(b.text)
    for name, text in FIXTURES.items():
        (tmp / name).write_text(text)
    return tmp


def run_blocks(tmp: Path, blocks: list[Block]) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    for b in blocks:
        script = commands(b)
        if not script.strip():
            continue
        res = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=3600)
        assert res.returncode == 0, (f"README line {b.line}: exit {res.returncode}\n{script}\n"
                                     f"{res.stderr[-3000:]}")


def shell_blocks(slow: bool | None = None) -> list[Block]:
    return [b for b in readme_blocks() if b.lang in SHELL and (slow is None or b.slow == slow)]


# ---- the README itself -----------------------------------------------------------------------

def test_readme_is_short_and_has_no_machine_paths():
    text = README.read_text()
    assert len(text) <= MAX_CHARS, len(text)
    assert not re.search(r"(?<![\w.])/(work|home|tmp|root|Users)/", text)
    for doc in re.findall(r"\]\((docs/[^)#]+)", text):  # links to the docs resolve
        assert (REPO / doc).exists(), doc


def test_the_yaml_reference_names_every_field():
    # every field of the workload, op and hardware specs appears in the README in backticks
    from perfmodel import specs

    text = re.sub(r"^```.*?^```", "", README.read_text(), flags=re.S | re.M)  # prose only
    named = {tok for span in re.findall(r"`([^`]+)`", text) for tok in re.findall(r"[\w.]+", span)}
    models = [specs.Workload, specs.Hardware, specs.Interconnect, *specs.OP_SPECS.values()]
    missing = {f"{m.__name__}.{f}" for m in models for f in m.model_fields if f not in named}
    assert not missing, f"document these in the README's YAML reference: {sorted(missing)}"
    kinds = {k for k in specs.OP_SPECS}
    assert kinds <= named


def test_blocks_are_found_and_marked():
    # the harness: the parser sees the README's shell, YAML and Python blocks and its markers
    blocks = readme_blocks()
    assert {"bash", "yaml", "python"} <= {b.lang for b in blocks}
    assert shell_blocks(slow=True) and shell_blocks(slow=False)
    assert any(b.file == "my-workload.yaml" for b in blocks)
    demo = "<!-- slow -->\n```bash\nx\n```\n\n```bash\ny\n```\n<!-- file: my-a.yaml -->\n```yaml\nname: a\n```\n"
    got = readme_blocks(demo)
    assert [(b.text, b.slow, b.file) for b in got] == [("x\n", True, None), ("y\n", False, None),
                                                       ("name: a\n", False, "my-a.yaml")]
    assert commands(readme_blocks("```bash\nmake test  # x\n.venv/bin/perfmodel hardware\n```\n")[0]) \
        == ".venv/bin/perfmodel hardware"


def test_every_placeholder_has_a_file():
    files = {b.file for b in readme_blocks() if b.file} | set(FIXTURES)
    used = set().union(*(placeholders(commands(b)) for b in shell_blocks()))
    assert used and used <= files, used - files


def test_yaml_examples_load(tmp_path):
    # each YAML block is a valid workload or hardware spec (a what-if chip through the catalog)
    from perfmodel import catalog

    n = 0
    for b in readme_blocks():
        if b.lang != "yaml":
            continue
        path = tmp_path / (b.file or f"block-{b.line}.yaml")
        path.write_text(b.text)
        data = yaml.safe_load(b.text)
        try:
            if "ops" in data:
                catalog.load_workload(path)
            else:
                catalog.load_hardware(path)
        except SpecError as e:
            pytest.fail(f"README line {b.line}: {e}")
        n += 1
    assert n >= 4


def test_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for b in readme_blocks():
        if b.lang == "python":
            exec(compile(b.text, f"README.md:{b.line}", "exec"), {})


def test_shell_examples_run(tmp_path):
    blocks = shell_blocks(slow=False)
    run_blocks(workdir(tmp_path), blocks)
    # what the tour says it writes, it wrote
    for out in ("reports/attention.xlsx", "reports/llama-decode.json", "workload.schema.json",
                "reports/mine.xlsx"):
        assert (tmp_path / out).stat().st_size > 0, out


def test_files_the_readme_writes_in_the_root_are_ignored(tmp_path):
    # every file a README command writes outside reports/ is git-ignored, and so are the
    # placeholders users write
    written = set()
    for b in shell_blocks():
        for target in re.findall(r">\s*(\S+)", commands(b)):
            written.add(target)
    written |= {b.file for b in readme_blocks() if b.file}
    root = [w for w in written if not w.startswith("reports/")]
    assert root
    res = subprocess.run(["git", "check-ignore", "--no-index", *root], cwd=REPO,
                         capture_output=True, text=True)
    ignored = set(res.stdout.split())
    assert set(root) <= ignored, set(root) - ignored


@pytest.mark.slow
def test_every_shell_example_runs_with_the_slow_ones(tmp_path):
    run_blocks(workdir(tmp_path), shell_blocks())
    assert (tmp_path / "reports" / "cpu-local-calibrated.yaml").exists()
    spec = load_model(tmp_path / "reports" / "cpu-local-calibrated.yaml", Hardware)
    assert spec.calibration is not None
