"""The hygiene operations (logs, shell histories, tmp, package caches, crash data, login
records) on a directory target: what goes, what stays, links never followed, bounds, undo."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from tests.linux.layouts import tree_digest

from reseal.operations._hygiene import HygieneOptions
from reseal.pipeline.runner import RunSettings, run_generalize
from reseal.pipeline.undo import undo_run

HYGIENE = ["linux-logfiles", "linux-shell-history", "linux-tmp-files", "linux-package-cache",
           "linux-crash-data", "linux-utmp"]
MACHINE_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def _put(root: Path, path: str, data: str = "x", mode: int = 0o644) -> None:
    host = root / path.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(data)
    os.chmod(host, mode)


@pytest.fixture
def guest(tmp_path: Path) -> Path:
    root = tmp_path / "guest"
    _put(root, "/etc/os-release", "ID=debian\n")
    _put(root, "/etc/hostname", "master\n")
    _put(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
         "bob:x:1001:1001::/srv/bob:/bin/zsh\nsvc:x:999:999::/nonexistent:/bin/false\n")
    _put(root, "/var/log/syslog", "master sshd[1]: Accepted\n")
    _put(root, "/var/log/syslog.2.gz", "\x1f\x8b")
    _put(root, "/var/log/apt/history.log", "Start-Date\n")
    _put(root, f"/var/log/journal/{MACHINE_ID}/system.journal", "LPKSHHRH")
    _put(root, "/var/log/wtmp", "records", 0o664)
    _put(root, "/var/log/wtmp.1", "old records")
    _put(root, "/var/log/lastlog", "last", 0o664)
    os.symlink("/etc/shadow", root / "var/log/evil")  # absolute: must stay inside the image
    os.symlink("../../../../../../../../etc", root / "var/log/up")  # climbs out: never followed
    _put(root, "/root/.bash_history", "ssh admin@10.0.0.1\n", 0o600)
    _put(root, "/home/alice/.zsh_history", ": 1:0;sudo -i\n")
    _put(root, "/home/alice/.local/share/fish/fish_history", "- cmd: ls\n")
    _put(root, "/home/alice/notes.txt", "keep me\n")
    _put(root, "/srv/bob/.bash_history", "make\n")
    _put(root, "/tmp/sub/dir/file", "t")
    os.chmod(root / "tmp", 0o1777)
    os.mkfifo(root / "tmp/fifo")
    _put(root, "/var/tmp/cache.bin", "v")
    _put(root, "/var/cache/apt/archives/bash_5.2_amd64.deb", "!<arch>\n")
    _put(root, "/var/cache/apt/archives/lock", "")
    (root / "var/cache/apt/archives/partial").mkdir()
    _put(root, "/var/cache/apt/pkgcache.bin", "cache")
    _put(root, "/var/crash/linux-image.crash", "ProblemType: KernelCrash\n")
    _put(root, "/var/lib/systemd/coredump/core.sshd.1000.zst", "core")
    _put(root, "/run/utmp", "who")
    os.symlink("/run", root / "var/run")
    os.symlink("../../../../../../../..", root / "home/escape")  # a home that leaves the image
    return root


def test_hygiene_removes_what_it_names_and_undo_puts_it_back(guest: Path, tmp_path: Path) -> None:
    host_etc = os.stat("/etc/passwd")
    before = tree_digest(guest)
    result = run_generalize(guest, RunSettings(only=HYGIENE), run_dir=tmp_path / "run")
    assert result.ok, result.report.error
    gone = ["var/log/syslog", "var/log/syslog.2.gz", "var/log/apt/history.log",
            f"var/log/journal/{MACHINE_ID}", "var/log/wtmp.1", "root/.bash_history",
            "home/alice/.zsh_history", "home/alice/.local/share/fish/fish_history",
            "srv/bob/.bash_history", "tmp/sub", "var/tmp/cache.bin",
            "var/cache/apt/archives/bash_5.2_amd64.deb", "var/cache/apt/pkgcache.bin",
            "var/crash/linux-image.crash", "var/lib/systemd/coredump/core.sshd.1000.zst",
            "run/utmp", "var/log/evil", "var/log/up"]
    assert [p for p in gone if os.path.lexists(guest / p)] == []
    kept = ["var/log/journal", "var/log/apt", "home/alice/notes.txt", "tmp",
            "var/cache/apt/archives/partial", "var/cache/apt/archives/lock", "var/run",
            "etc/hostname"]
    assert [p for p in kept if not os.path.lexists(guest / p)] == []
    # login records are emptied in place, mode kept
    for name in ("wtmp", "lastlog"):
        assert (guest / "var/log" / name).read_bytes() == b""
        assert stat.S_IMODE((guest / "var/log" / name).stat().st_mode) == 0o664
    assert stat.S_IMODE((guest / "tmp").stat().st_mode) == 0o1777
    assert stat.S_ISFIFO(os.lstat(guest / "tmp/fifo").st_mode)  # left where it was
    assert any("special files" in n and "/tmp/fifo" in n for n in result.report.notes)
    assert os.path.islink(guest / "home/escape")
    # links were removed as links: the journal holds their text, not what they point at
    entries = [json.loads(line) for line in
               (tmp_path / "run" / "journal" / "entries.jsonl").read_text().splitlines()]
    links = {e["path"]: e["old_value"] for e in entries if e["kind"] == "symlink"}
    assert links == {"/var/log/evil": "/etc/shadow", "/var/log/up": "../../../../../../../../etc"}
    assert os.stat("/etc/passwd") == host_etc
    assert result.journal_dir is not None
    undo_run(guest, result.journal_dir)
    assert tree_digest(guest) == before


def test_a_sweep_past_its_bound_changes_nothing(guest: Path, tmp_path: Path) -> None:
    before = tree_digest(guest)
    result = run_generalize(guest, RunSettings(
        only=["linux-logfiles"], options={"linux-logfiles": HygieneOptions(max_files=3)}),
        run_dir=tmp_path / "run")
    assert any("more than 3 files" in w and "nothing removed" in w
               for w in result.report.warnings)
    assert tree_digest(guest) == before
    result = run_generalize(guest, RunSettings(
        only=["linux-logfiles"], options={"linux-logfiles": HygieneOptions(max_bytes=10)}),
        run_dir=tmp_path / "run2")
    assert any("more than 10 bytes" in w for w in result.report.warnings)
    assert tree_digest(guest) == before


def test_dry_run_plans_and_writes_nothing(guest: Path) -> None:
    before = tree_digest(guest)
    result = run_generalize(guest, RunSettings(only=HYGIENE), dry_run=True)
    assert {c.where for c in result.report.changes} >= {"/var/log/syslog", "/root/.bash_history",
                                                        "/tmp/sub/dir/file", "/run/utmp"}
    assert tree_digest(guest) == before
