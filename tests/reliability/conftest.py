"""The sample images of tests/image (built once per session and worker) and its leak check,
plus helpers to run the CLI as a user would: a state and a work directory of the test's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.image.conftest import (  # noqa: F401  (fixtures used by the tests here)
    images_dir,
    linux_gpt,
    linux_mbr,
    linux_qcow2,
    no_leaks,
    reseal_tempdir,
    win7_hives,
    win_hives,
    windows_gpt,
    windows_mbr,
    windows_qcow2,
)

from reseal.samples.builders import SampleImage

SAMPLES = ("windows_gpt", "windows_mbr", "linux_gpt", "linux_mbr", "linux_qcow2")


def copy_sample(sample: SampleImage, directory: Path, name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / (name or sample.path.name)
    subprocess.run(["cp", "--sparse=always", str(sample.path), str(copy)], check=True)
    return copy


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a reseal command of this test: its own state and work directories."""
    work = Path(os.environ.get("RESEAL_WORK_DIR") or tmp_path / "work")
    return {**os.environ, "RESEAL_STATE_DIR": str(tmp_path / "state"),
            "RESEAL_WORK_DIR": str(work)}


def reseal(*args: str, env: dict[str, str], timeout: float = 300
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reseal", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


def start_reseal(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reseal", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def journal_of(report_json: str) -> Path:
    return Path(json.loads(report_json)["journal"])


def which_or_skip(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is not installed")
    return found


def linux_root(root: Path, key_types: tuple[str, ...] = ()) -> Path:
    """A small Debian root directory (a directory target), with SSH host keys of `key_types`."""
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "etc/hostname").write_text("master\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tmaster\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    for key_type in key_types:
        subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "root@master", "-f",
                        str(root / f"etc/ssh/ssh_host_{key_type}_key")], check=True)
    return root
