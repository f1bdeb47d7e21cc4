"""`reseal verify` on Linux: a clean clone exits 0; each planted trace of the old identity is
found (one per store), and verify exits 1 until it is explained or gone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunResult, RunSettings, run_generalize

from .layouts import BUILDERS, MAC, MASTER_HOST, MASTER_ID

OPS = ["linux-hostname", "linux-machine-id", "linux-random-seed", "linux-ssh-hostkeys",
       "linux-net-bindings", "linux-bootloader", "linux-leftovers"]


def generalize(root: Path, tmp_path: Path) -> RunResult:
    result = run_generalize(root, RunSettings(request=IdentityRequest(hostname="clone-3",
                                                                       seed=3), only=OPS),
                            run_dir=tmp_path / "run")
    assert result.ok, result.report.warnings
    return result


def verify(root: Path, report: Path) -> tuple[int, dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "reseal", "verify", str(root), "--report",
                           str(report), "--json"], capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def clone(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    (root / "var/log/journal" / MASTER_ID).mkdir(parents=True)
    (root / "var/log/journal" / MASTER_ID / "system.journal").write_bytes(b"LPKSHHRH" + b"\0" * 56)
    result = generalize(root, tmp_path)
    assert result.report_path is not None
    # the run's own leftover scan agrees: the journal is explained by a note, nothing else left
    assert not [w for w in result.report.warnings if "still holds" in w], result.report.warnings
    assert any(f"/var/log/journal/{MASTER_ID}" in n for n in result.report.notes)
    return root, result.report_path


def test_clean_clone_exits_0_and_the_masters_journal_is_explained(clone: tuple[Path, Path]
                                                                   ) -> None:
    root, report = clone
    code, out = verify(root, report)
    assert code == 0, out
    hits = out["hits"]
    assert isinstance(hits, list)
    assert {h["where"] for h in hits} == {f"/var/log/journal/{MASTER_ID}"}
    assert all(h["explained"] for h in hits)


PLANTED = {
    "/etc/samba/smb.conf": ("[global]\n   netbios name = MASTER\n   workgroup = LAB\n", "hostname"),
    "/etc/sssd/sssd.conf": (f"[domain/lab]\nldap_sasl_authid = host/{MASTER_HOST}.lab.example\n",
                            "hostname"),
    "/etc/realmd.conf": (f"[active-directory]\nos-name = Debian\n[{MASTER_HOST}]\n", "hostname"),
    "/etc/ipa/default.conf": (f"[global]\nhost = {MASTER_HOST}.lab.example\n", "hostname"),
    "/etc/opt/app/agent.ini": (f"node_id={MASTER_ID}\n", "machine-id"),
    "/etc/opt/app/nic.conf": (f"hwaddr={MAC.upper()}\n", "mac:"),
    "/var/lib/app/" + MASTER_ID: ("state\n", "machine-id"),
}


@pytest.mark.parametrize("path", sorted(PLANTED))
def test_each_planted_trace_is_found_and_verify_exits_1(clone: tuple[Path, Path],
                                                         path: str) -> None:
    root, report = clone
    text, what = PLANTED[path]
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(text)
    code, out = verify(root, report)
    assert code == 1, out
    hits = out["hits"]
    assert isinstance(hits, list)
    found = [h for h in hits if h["where"] == path]
    assert found and found[0]["what"].startswith(what) and not found[0]["explained"], hits
    host.unlink()
    assert verify(root, report)[0] == 0


def test_a_master_named_like_its_distribution_is_looked_for_where_names_live(
        tmp_path: Path) -> None:
    """A host called "debian" is in every apt source: those are not traces."""
    root = tmp_path / "root"
    BUILDERS["debian"](root)
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/apt").mkdir()
    (root / "etc/apt/sources.list").write_text("deb http://deb.debian.org/debian bookworm main\n")
    result = generalize(root, tmp_path)
    assert result.report_path is not None
    assert verify(root, result.report_path)[0] == 0
    (root / "etc/samba").mkdir()
    (root / "etc/samba/smb.conf").write_text("[global]\nnetbios name = debian\n")
    code, out = verify(root, result.report_path)
    assert code == 1 and any(h["where"] == "/etc/samba/smb.conf" for h in out["hits"])  # type: ignore[union-attr]
