"""Crafted guest files: nesting deeper than any recursion, files sized to exhaust memory or
time. reseal iterates, bounds what it reads per kind of file, and refuses with one line."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.hostile.builders import linux_root, write
from tests.hostile.conftest import assert_refused, run_reseal, tree_state

NM_DIR = "etc/NetworkManager/system-connections"


@pytest.fixture
def outside_pytest_tmp() -> Iterator[Path]:
    """A directory outside pytest's temporary root, removed with `rm -rf` (which walks any
    depth): pytest's own clean-up recurses and would fail on a tree this deep, for every
    later session on the machine."""
    path = Path(tempfile.mkdtemp(prefix="reseal-hostile-deep-"))
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


@pytest.mark.parametrize("depth", [1200, 2100])
def test_deeply_nested_directories_are_walked_without_recursion(
        outside_pytest_tmp: Path, state_env: dict[str, str], depth: int) -> None:
    """1,200 levels fit in a path; 2,100 do not (PATH_MAX): both end cleanly."""
    root = linux_root(outside_pytest_tmp / "root", ssh=False)
    deep = root / NM_DIR
    deep.mkdir(parents=True)
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:  # mkdir relative to the last level: no path grows past PATH_MAX while building
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("x.nmconnection", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd),
                  "w") as handle:
            handle.write("[connection]\nid=deep\n")
    finally:
        os.close(fd)
    run = run_reseal(["generalize", root, "--hostname", "new-name", "--json"], env=state_env)
    assert "Traceback" not in run.stderr and "RecursionError" not in run.stderr
    assert run.returncode == 0, run.stderr
    run = run_reseal(["inspect", root], env=state_env)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(("guest", "size", "args"), [
    ("/boot/grub/grub.cfg", 12 << 20, ["--operations", "linux-bootloader"]),
    ("/etc/hostname", 100 << 20, ["--hostname", "new-name"]),
    ("/etc/machine-id", 200 << 20, []),
    ("/etc/NetworkManager/system-connections/big.nmconnection", 8 << 20, []),
])
def test_oversized_guest_file_is_refused_quickly(tmp_path: Path, state_env: dict[str, str],
                                                guest: str, size: int, args: list[str]) -> None:
    root = linux_root(tmp_path / "root", ssh=False)
    line = b"menuentry 'Debian' { linux /vmlinuz root=/dev/sda2 ro quiet }\n"
    host = write(root, guest, line * (min(size, 16 << 20) // len(line)))
    with open(host, "r+b") as handle:
        handle.truncate(size)  # beyond 16 MiB: a sparse tail
    before = tree_state(root)
    for dry in (["--dry-run"], []):
        run = run_reseal(["generalize", root, *args, *dry], env=state_env, timeout=30)
        assert_refused(run, guest, "bytes")
        assert run.seconds < 10
        assert run.max_rss_kib < 300 << 10
    assert tree_state(root) == before


def test_long_hosts_list_is_still_edited(tmp_path: Path, state_env: dict[str, str]) -> None:
    """A block list in /etc/hosts is legitimately long: its own, larger bound."""
    root = linux_root(tmp_path / "root", ssh=False)
    entries = "".join(f"0.0.0.0 ads{n}.example\n" for n in range(150_000))
    write(root, "/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 master\n{entries}")
    run = run_reseal(["generalize", root, "--hostname", "new-name", "--operations",
                      "linux-hostname"], env=state_env)
    assert run.returncode == 0, run.stderr
    assert "new-name" in (root / "etc/hosts").read_text().splitlines()[1]
