"""LibreOffice headless helpers for the workbook tests: forced recalculation and rendering."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
needs_lo = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) not installed")

# Force "always recalculate" on load, else LibreOffice trusts the cached values we wrote.
_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def _profile(root: Path) -> str:
    user = root / "lo-profile" / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(_XCU)
    return (root / "lo-profile").resolve().as_uri()


def convert(src: Path, outdir: Path, to: str = "xlsx", timeout: int = 300) -> Path:
    """Open ``src`` in LibreOffice (recalculating every formula) and save it as ``to``."""
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [SOFFICE, "--headless", "--norestore", f"-env:UserInstallation={_profile(outdir)}",
           "--convert-to", to, "--outdir", str(outdir), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    out = outdir / (src.stem + "." + to.split(":")[0])
    assert out.exists(), f"LibreOffice did not write {out}"
    return out


def shown(src: Path, outdir: Path, timeout: int = 300) -> dict[str, list[list[str]]]:
    """Every sheet's cells as LibreOffice displays them (number formats applied), by sheet
    name: its CSV export with "save cell contents as shown", one file per sheet."""
    import csv

    outdir.mkdir(parents=True, exist_ok=True)
    # CSV filter tokens: comma, double quote, UTF-8, from line 1, no column formats, default
    # language, quote text, detect specials, save as shown, no formulas, no trailing spaces,
    # every sheet (-1: one file <stem>-<sheet>.csv each)
    to = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,true,true,true,false,false,-1"
    cmd = [SOFFICE, "--headless", "--norestore", f"-env:UserInstallation={_profile(outdir)}",
           "--convert-to", to, "--outdir", str(outdir), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    out = {}
    for f in outdir.glob(f"{src.stem}-*.csv"):
        with open(f, newline="", encoding="utf-8") as fh:
            out[f.stem[len(src.stem) + 1:]] = list(csv.reader(fh))
    assert out, f"LibreOffice wrote no CSV for {src}"
    return out
