"""The test LAN leaves nothing behind: not after a failure inside it, not after a killed run."""

from __future__ import annotations

import os
import subprocess

import pytest
from tests.audit.lab import HostSpec, Lab, remove_stale_labs, tools_missing

pytestmark = [pytest.mark.root]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.split()}


@pytest.fixture
def need_lab_tools() -> None:
    if os.geteuid() != 0 or tools_missing():
        pytest.skip("needs root and the lab's tools")


@pytest.mark.usefixtures("need_lab_tools")
def test_lab_is_removed_after_a_failure_inside_it() -> None:
    tag = ""
    with pytest.raises(RuntimeError, match="planned"), \
            Lab.create([HostSpec("SOLO", 11, ssh=False, smb_user=False)]) as lab:
        tag = lab.tag
        assert {f"{tag}-sw", f"{tag}-scan", f"{tag}-h11"} <= _namespaces()
        pid = lab.hosts[0].process.pid if lab.hosts[0].process else 0
        raise RuntimeError("planned")
    assert not [n for n in _namespaces() if n.startswith(tag)]
    assert not lab.workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.usefixtures("need_lab_tools")
def test_a_lab_whose_owner_died_is_removed() -> None:
    dead = 4_000_000  # above pid_max: no such process
    name = f"rsa{dead}x0badc0-sw"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        remove_stale_labs()
        assert name not in _namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
