"""The undo journal records the guest object itself (a link as its text, never the host file
it would name), refuses device nodes, FIFOs and sockets, keeps holes, and is refused by undo
when anyone but root could have written it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from tests.hostile.builders import MACHINE_ID, ext4_files, ext4_image, linux_root, write
from tests.hostile.conftest import (
    Canary,
    assert_not_leaked,
    assert_refused,
    make_canary,
    run_reseal,
    tree_state,
)

LINK_CASES = [
    ("linux-machine-id", "/var/lib/dbus/machine-id", MACHINE_ID + "\n"),
    ("linux-ssh-hostkeys", "/etc/ssh/ssh_host_ed25519_key", "not a key\n"),
    ("linux-net-bindings", "/etc/udev/rules.d/70-persistent-net.rules",
     'SUBSYSTEM=="net", ATTR{address}=="52:54:00:ab:cd:ef", NAME="eth0"\n'),
    ("linux-net-bindings", "/var/lib/NetworkManager/secret_key", "secret\n"),
]


def _run_dir(tmp_path: Path) -> Path:
    return next((tmp_path / "state" / "runs").iterdir())


def _entries(journal: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (journal / "entries.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("operation", "guest", "inside"), LINK_CASES,
                         ids=[case[1].rsplit("/", 1)[1] for case in LINK_CASES])
def test_absolute_link_is_journaled_as_a_link(tmp_path: Path, state_env: dict[str, str],
                                              operation: str, guest: str, inside: str) -> None:
    """The guest path is an absolute link whose text is a host file's path; the image has a
    file of that name too. The run changes the link; the journal keeps the link text, and
    undo puts the link back, never the host file's bytes."""
    canary = make_canary(tmp_path / "host")
    root = linux_root(tmp_path / "root")
    write(root, str(canary.path), inside)  # the same-named file inside the image
    link = root / guest.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(canary.path)
    run = run_reseal(["generalize", root, "--operations", operation], env=state_env)
    assert run.returncode == 0, run.stderr
    canary.assert_untouched()
    run_dir = _run_dir(tmp_path)
    assert_not_leaked(canary.token, [run_dir, root])
    entries = _entries(run_dir / "journal")
    in_image = root / str(canary.path).lstrip("/")
    if link.is_symlink() and os.readlink(link) == str(canary.path):
        # The operation edited the file the link names, as the guest would: the file inside
        # the image, never the host's. The journal holds that file's old bytes.
        recorded = [e for e in entries if e["path"] == str(canary.path)]
        assert recorded and recorded[0]["kind"] == "file"
    else:
        # The operation replaced or removed the link itself: the journal keeps its text.
        recorded = [e for e in entries if e["path"] == guest]
        assert recorded and recorded[0]["kind"] == "symlink"
        assert recorded[0]["old_value"] == str(canary.path)

    undo = run_reseal(["undo", root, run_dir / "journal"], env=state_env)
    assert undo.returncode == 0, undo.stderr
    assert link.is_symlink() and os.readlink(link) == str(canary.path)
    assert in_image.read_text() == inside
    canary.assert_untouched()
    assert_not_leaked(canary.token, [root])


def _special(root: Path, guest: str, kind: str, device: tuple[int, int] = (1, 5)) -> None:
    host = root / guest.lstrip("/")
    host.parent.mkdir(parents=True, exist_ok=True)
    host.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(host)
    elif kind == "socket":
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(host))
    else:
        mode = stat.S_IFCHR if kind == "char" else stat.S_IFBLK
        os.mknod(host, mode | 0o600, os.makedev(*device))


SPECIAL_CASES = [
    ("/etc/hostname", "fifo", ["--hostname", "new-name"]),
    ("/etc/machine-id", "fifo", []),
    ("/etc/ssh/ssh_host_ed25519_key", "fifo", []),
    ("/etc/hostname", "socket", ["--hostname", "new-name"]),
    ("/etc/machine-id", "char", []),
]


@pytest.mark.parametrize(("guest", "kind", "extra"), SPECIAL_CASES,
                         ids=[f"{c[1]}-{c[0].rsplit('/', 1)[1]}" for c in SPECIAL_CASES])
def test_special_file_in_a_tree_is_refused_before_any_write(
        tmp_path: Path, state_env: dict[str, str], guest: str, kind: str,
        extra: list[str]) -> None:
    root = linux_root(tmp_path / "root")
    write(root, "/etc/ssh/ssh_host_rsa_key", "old rsa key\n", 0o600)  # removed before ed25519
    _special(root, guest, kind)
    before = tree_state(root)
    run = run_reseal(["generalize", root, *extra], env=state_env, timeout=30)
    assert_refused(run, guest)
    assert tree_state(root) == before
    assert not (tmp_path / "state" / "runs").exists() or not any(
        (tmp_path / "state" / "runs").iterdir())


def test_host_block_device_node_is_never_read(tmp_path: Path, state_env: dict[str, str]) -> None:
    """A block device node at an SSH key path names a real host device (here a loop device
    over a canary): reseal neither copies it into the journal nor opens it."""
    canary = make_canary(tmp_path / "host", size=1 << 20)
    loop = subprocess.run(["losetup", "--find", "--show", "--read-only", str(canary.path)],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        canary = make_canary(tmp_path / "host2")  # the loop device read the first one
        rdev = os.stat(loop).st_rdev
        root = linux_root(tmp_path / "root")
        _special(root, "/etc/ssh/ssh_host_ed25519_key", "block",
                 (os.major(rdev), os.minor(rdev)))
        before = tree_state(root)
        run = run_reseal(["generalize", root], env=state_env, timeout=30)
        assert_refused(run, "block device")
        assert tree_state(root) == before
        assert_not_leaked(canary.token, [tmp_path / "state", root])
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def test_char_device_on_a_nodev_image_is_refused(tmp_path: Path, state_env: dict[str, str]
                                                 ) -> None:
    root = linux_root(tmp_path / "root")
    _special(root, "/etc/machine-id", "char")
    image = ext4_image(root, tmp_path / "disk.img")
    before = tree_state(ext4_files(image, tmp_path / "before"))
    run = run_reseal(["generalize", image], env=state_env, timeout=30)
    assert_refused(run, "/etc/machine-id", "character device")
    # a kernel mount updates the superblock; every file of the image is as it was
    assert tree_state(ext4_files(image, tmp_path / "after")) == before


def test_sparse_file_stays_sparse_in_the_journal_and_after_undo(
        tmp_path: Path, state_env: dict[str, str]) -> None:
    root = linux_root(tmp_path / "root")
    key = root / "etc/ssh/ssh_host_ed25519_key"
    head = key.read_bytes()
    with open(key, "r+b") as handle:
        handle.truncate(2 << 30)  # 2 GiB apparent, a few KiB of data
    run = run_reseal(["generalize", root, "--operations", "linux-ssh-hostkeys",
                      "--json"], env=state_env)
    assert run.returncode == 0, run.stderr
    run_dir = _run_dir(tmp_path)
    blobs = list((run_dir / "journal" / "blobs").iterdir())
    assert sum(b.stat().st_blocks * 512 for b in blobs) < 1 << 20
    assert any(b.stat().st_size == 2 << 30 for b in blobs)
    undo = run_reseal(["undo", root, run_dir / "journal"], env=state_env)
    assert undo.returncode == 0, undo.stderr
    st = key.stat()
    assert st.st_size == 2 << 30 and st.st_blocks * 512 < 1 << 20
    with open(key, "rb") as handle:
        assert handle.read(len(head)) == head


def _journaled_run(tmp_path: Path, state_env: dict[str, str]) -> tuple[Path, Path]:
    root = linux_root(tmp_path / "root")
    run = run_reseal(["generalize", root, "--hostname", "changed", "--operations",
                      "linux-hostname"], env=state_env)
    assert run.returncode == 0, run.stderr
    return root, _run_dir(tmp_path) / "journal"


def test_blob_name_outside_the_journal_is_refused(tmp_path: Path, state_env: dict[str, str]
                                                  ) -> None:
    canary: Canary = make_canary(tmp_path / "host")
    root, journal = _journaled_run(tmp_path, state_env)
    entries = _entries(journal)
    entries[0]["blob"] = os.path.relpath(canary.path, journal / "blobs")
    (journal / "entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    before = tree_state(root)
    run = run_reseal(["undo", root, journal], env=state_env)
    assert_refused(run, "blob")
    assert tree_state(root) == before
    canary.assert_untouched()
    assert_not_leaked(canary.token, [root])


@pytest.mark.parametrize("how", ["group-writable-entries", "world-writable-dir",
                                 "foreign-owner", "linked-blob"])
def test_journal_others_could_write_is_refused(tmp_path: Path, state_env: dict[str, str],
                                               how: str) -> None:
    root, journal = _journaled_run(tmp_path, state_env)
    if how == "group-writable-entries":
        os.chmod(journal / "entries.jsonl", 0o620)
    elif how == "world-writable-dir":
        os.chmod(journal, 0o777)
    elif how == "foreign-owner":
        os.chown(journal / "entries.jsonl", 65534, 65534)
    else:
        canary = make_canary(tmp_path / "host")
        blob = next((journal / "blobs").iterdir())
        blob.unlink()
        blob.symlink_to(canary.path)
    before = tree_state(root)
    run = run_reseal(["undo", root, journal], env=state_env)
    assert_refused(run, "journal")
    assert tree_state(root) == before


def test_state_and_run_directories_are_private_whatever_the_umask(
        tmp_path: Path, state_env: dict[str, str]) -> None:
    root = linux_root(tmp_path / "root")
    run = run_reseal(["generalize", root, "--hostname", "changed", "--operations",
                      "linux-hostname"], env=state_env, umask=0)
    assert run.returncode == 0, run.stderr
    state = tmp_path / "state"
    run_dir = _run_dir(tmp_path)
    for directory in (state, state / "runs", run_dir, run_dir / "journal",
                      run_dir / "journal" / "blobs"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for path in (run_dir / "report.json", run_dir / "journal" / "entries.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
