"""The generalize runner end to end on a directory root: report, journal, undo, dry run."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reseal.errors import BadInput
from reseal.operations import all_operations
from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunSettings, run_generalize, select_operations
from reseal.pipeline.undo import undo_run

OLD_HOST = "master-01"


def _linux_root(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n')
    (root / "etc/hostname").write_text(OLD_HOST + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{OLD_HOST}\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    return root


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                out[str(path.relative_to(root))] = "link:" + os.readlink(path)
            else:
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _require(name: str) -> None:
    if name not in {op.name for op in all_operations()}:
        pytest.skip(f"operation {name} is not available")


def test_generalize_report_and_undo_restore_every_byte(tmp_path: Path) -> None:
    _require("linux-hostname")
    root = _linux_root(tmp_path / "root")
    before = _tree_digest(root)
    settings = RunSettings(machine="lab-7", request=IdentityRequest(hostname="lab-7"))
    result = run_generalize(root, settings, run_dir=tmp_path / "run")
    assert result.ok
    assert (root / "etc/hostname").read_text().strip() == "lab-7"
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert report["identity"]["hostname"] == {"name": "hostname", "old": OLD_HOST, "new": "lab-7"}
    assert stat.S_IMODE(os.stat(tmp_path / "run/report.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "run/journal").st_mode) == 0o700
    assert _tree_digest(root) != before
    undo_run(root, tmp_path / "run/journal")
    assert _tree_digest(root) == before


def test_dry_run_writes_nothing_and_lists_the_plan(tmp_path: Path) -> None:
    _require("linux-hostname")
    root = _linux_root(tmp_path / "root")
    before = _tree_digest(root)
    settings = RunSettings(request=IdentityRequest(hostname="lab-8"))
    result = run_generalize(root, settings, dry_run=True)
    assert _tree_digest(root) == before
    assert any(c.new and "lab-8" in c.new for c in result.report.changes)
    assert any(fc.path == "/etc/hostname" for fc in result.file_changes)


def test_unknown_operation_is_bad_input_with_suggestion() -> None:
    _require("linux-hostname")
    with pytest.raises(BadInput, match="did you mean linux-hostname"):
        select_operations(RunSettings(enable=["linux-hostnam"]))


def test_bad_hostname_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    _require("linux-hostname")
    root = _linux_root(tmp_path / "root")
    before = _tree_digest(root)
    proc = subprocess.run(
        [sys.executable, "-m", "reseal", "generalize", str(root), "--hostname=-bad_name-",
         "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("reseal: error:")
    assert _tree_digest(root) == before
    assert not (tmp_path / "run").exists()
