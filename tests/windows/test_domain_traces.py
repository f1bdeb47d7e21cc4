"""reseal verify on a Windows domain member without a DC: a run that leaves the master's
membership in place (no windows-domain-leave) is caught, secret and cached logons by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from reseal.registry import Hive

from .domain_helpers import build_member_tree
from .helpers import CONFIG

RESEAL = [sys.executable, "-m", "reseal"]


def test_verify_flags_the_masters_secret_and_cached_logons(shared_dir: Path,
                                                           tmp_path: Path) -> None:
    """No DC needed: a run without windows-domain-leave leaves the master's $MACHINE.ACC
    and its four cached logons (dfwinreg's real ones), and verify names each of them; after
    windows-domain-leave, none is left."""
    from reseal.windows.lsa import LsaSecrets, boot_key

    tree = build_member_tree(shared_dir, tmp_path / "root", "dfwinreg")
    config = tree.root / CONFIG
    security = Hive.open(config / "SECURITY")
    lsa = LsaSecrets.open(security, boot_key(Hive.open(config / "SYSTEM")))
    secret = tree.secrets["$MACHINE.ACC"]
    lsa.write("$MACHINE.ACC", secret, secret, when=datetime(2016, 11, 1, tzinfo=UTC))
    security.save(config / "SECURITY")
    (config / "SECURITY.reseal-orig").unlink()
    env = {**os.environ, "RESEAL_STATE_DIR": str(tmp_path / "state")}

    def generalize(operations: str, run: str) -> Path:
        done = subprocess.run([*RESEAL, "generalize", str(tree.root), "--hostname", "NEWPC8",
                               "--operations", operations, "--run-dir", str(tmp_path / run)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return tmp_path / run / "report.json"

    def verify(report: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*RESEAL, "verify", str(tree.root), "--report", str(report),
                               "--json"], capture_output=True, text=True, env=env, timeout=300)

    report = generalize("windows-machine-sid,windows-computer-name", "run1")
    found = verify(report)
    assert found.returncode == 1, found.stdout + found.stderr
    hits = [h for h in json.loads(found.stdout)["hits"] if h["remedy"] ==
            "windows-domain-leave"]
    assert sorted(h["where"] for h in hits) == [
        "SECURITY\\Cache\\NL$1", "SECURITY\\Cache\\NL$2", "SECURITY\\Cache\\NL$3",
        "SECURITY\\Cache\\NL$4", "SECURITY\\Policy\\Secrets\\$MACHINE.ACC"]
    assert all(not h["explained"] for h in hits)
    assert secret.hex() not in found.stdout

    report = generalize("windows-domain-leave", "run2")
    clean = verify(report)
    assert not [h for h in json.loads(clean.stdout)["hits"]
                if h["remedy"] == "windows-domain-leave"], clean.stdout
