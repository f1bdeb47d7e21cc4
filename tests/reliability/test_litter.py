"""What a killed run leaves behind is cleaned: its work directory by the next run, its
temporary files inside the image by `reseal undo`; new private keys never sit in /tmp."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reseal.image.target import OpenOptions, open_target
from reseal.samples.builders import SampleImage

from .conftest import cli_env, copy_sample, linux_root, reseal, start_reseal

# Runs reseal's CLI and kills it (SIGKILL, as the kernel's OOM killer or a power cut would)
# right after the Nth call of os.fsync or os.replace that concerns a file whose name matches
# the regular expression MARK: a deterministic point inside a crash-safe file replacement.
KILLER = """
import os, re, signal, sys
call, mark, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = 0
real = getattr(os, call)

def name_of(args):
    if call == "fsync":
        return os.readlink(f"/proc/self/fd/{args[0]}")
    return str(args[1])

def patched(*args, **kwargs):
    global seen
    result = real(*args, **kwargs)
    if re.search(mark, name_of(args)):
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(os, call, patched)
from reseal.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _killed_run(env: dict[str, str], call: str, mark: str, nth: int, *args: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLER, call, mark, str(nth), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr


def _journal(tmp_path: Path) -> Path:
    journals = sorted((tmp_path / "state" / "runs").glob("*/journal"))
    assert len(journals) == 1
    return journals[0]


def _tree(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "dir"
    return found


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_undo_removes_the_temporary_file_of_a_killed_write(nth: int, tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root", ("ed25519", "ecdsa"))
    before = _tree(root)
    env = cli_env(tmp_path)
    _killed_run(env, "fsync", r"/\.reseal-tmp-", nth, "generalize", str(root), "--hostname",
                "new")
    assert any(".reseal-tmp-" in name for name in _tree(root))  # the kill left one
    undone = reseal("undo", str(root), str(_journal(tmp_path)), env=env)
    assert undone.returncode == 0, undone.stderr
    assert "temporary files of an interrupted run" in undone.stdout
    assert _tree(root) == before


def test_kill_after_replacing_an_open_file_leaves_no_fuse_hidden(windows_gpt: SampleImage,
                                                                 tmp_path: Path) -> None:
    """ntfs-3g keeps a file replaced while open as .fuse_hidden* until it is closed: killed
    right after the rename of the first hive was made durable (its directory fsynced)."""
    image = copy_sample(windows_gpt, tmp_path)
    env = cli_env(tmp_path)
    _killed_run(env, "fsync", "/Windows/System32/config$", 1, "generalize", str(image),
                "--hostname", "NEW-NAME")
    undone = reseal("undo", str(image), str(_journal(tmp_path)), env=env)
    assert undone.returncode == 0, undone.stderr
    with open_target(image) as target:
        fs = target.windows[0].fs
        litter = [f"{d}/{n}" for d, _dirs, files in fs.walk("/") for n in files
                  if n.startswith((".fuse_hidden", ".reseal-tmp-"))]
    assert litter == []


def test_next_run_removes_the_work_directory_of_a_killed_one(linux_qcow2: SampleImage,
                                                              tmp_path: Path) -> None:
    image = copy_sample(linux_qcow2, tmp_path / "images")
    work = tmp_path / "work"
    env = {**cli_env(tmp_path), "RESEAL_WORK_DIR": str(work)}
    run = start_reseal("generalize", str(image), "--hostname", "killed", env=env)
    deadline = time.monotonic() + 60
    while not list(work.glob("reseal-disk-*/export/disk.raw")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    left = list(work.glob("reseal-*"))
    assert left  # a SIGKILL cannot clean up after itself
    # a live run's directory is never taken: hold one open while the next run cleans
    from reseal.image.workdirs import work_dir

    with work_dir("live") as live:
        done = reseal("inspect", str(image), env=env)
        assert done.returncode == 0, done.stderr
        assert live.is_dir()
    assert not [p for p in left if p.exists()]


def test_new_host_keys_are_made_outside_tmp(tmp_path: Path) -> None:
    """ssh-keygen writes the new private keys into the run's private work directory."""
    root = linux_root(tmp_path / "root", ("ed25519", "ecdsa"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "keygen.log"
    wrapper = bin_dir / "ssh-keygen"
    wrapper.write_text(f'#!/bin/sh\nfor a; do last="$a"; done\necho "$last" >> {log}\n'
                       'exec /usr/bin/ssh-keygen "$@"\n')
    wrapper.chmod(0o755)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    work = tmp_path / "work"
    env = {**cli_env(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmpdir),
           "RESEAL_WORK_DIR": str(work)}
    done = reseal("generalize", str(root), "--hostname", "new", env=env)
    assert done.returncode == 0, done.stderr
    written = log.read_text().split()
    assert len(written) == 2
    for path in written:
        assert Path(path).is_relative_to(work) and not Path(path).is_relative_to(tmpdir)
        assert not Path(path).exists()
    assert list(tmpdir.iterdir()) == [] and list(work.iterdir()) == []
    from reseal.image.workdirs import DEFAULT_BASE

    assert not DEFAULT_BASE.is_relative_to("/tmp")


def test_open_target_works_in_a_directory_of_its_own(linux_gpt: SampleImage) -> None:
    with open_target(linux_gpt.path, OpenOptions()) as target:
        roots = [v.fs.root for v in target.volumes if v.fs is not None]
        assert roots and all(r.parent.name.startswith("reseal-disk-") for r in roots)
        assert all(os.stat(r.parent).st_mode & 0o777 == 0o700 for r in roots)


def test_work_directories_of_older_versions_are_removed_when_unused(tmp_path: Path) -> None:
    """/tmp/reseal-XXXXXXXX (mount points), reseal-ssh-* (new private keys) and
    reseal-inspect-* (hive copies) of killed runs of older versions: removed once an hour
    old and unused; anything else, or anything still mounted on, is left alone."""
    from reseal.image.workdirs import clean_legacy

    old = time.time() - 7200
    names = ["reseal-ab12cd34", "reseal-ssh-k3y5_0ne", "reseal-inspect-zz99yy88",
             "reseal-young123", "reseal-bench-abcdefgh", "reseal-mounted1"]
    for name in names:
        (tmp_path / name / "p1").mkdir(parents=True)
    (tmp_path / "reseal-ssh-k3y5_0ne" / "ssh_host_ed25519_key").write_text("secret")
    for name in names:
        if name != "reseal-young123":
            os.utime(tmp_path / name, (old, old))
    mounted = tmp_path / "reseal-mounted1" / "p1"
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mounted)], check=True)
    try:
        removed = {p.name for p in clean_legacy(tmp_path)}
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert removed == {"reseal-ab12cd34", "reseal-ssh-k3y5_0ne", "reseal-inspect-zz99yy88"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "reseal-bench-abcdefgh", "reseal-mounted1", "reseal-young123"]
