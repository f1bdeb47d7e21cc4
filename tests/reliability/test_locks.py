"""One run per target: a second run on the same image, device or directory, by any name, is
refused at once (exit 2) and changes nothing; the first run finishes as if alone."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import file_sha256

from reseal.image.lock import LOCK_DIR, target_key
from reseal.samples.builders import SampleImage

from .conftest import (
    cli_env,
    copy_sample,
    journal_of,
    linux_root,
    reseal,
    start_reseal,
)


def _locked_by_someone(path: Path) -> bool:
    lock = LOCK_DIR / target_key(path)
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.parametrize(("sample", "alias"), [
    ("linux_gpt", False), ("linux_gpt", True), ("windows_gpt", True), ("directory", True),
])
def test_second_run_on_one_target_is_refused(sample: str, alias: bool, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    if sample == "directory":
        target = linux_root(tmp_path / "root")
    else:
        target = copy_sample(request.getfixturevalue(sample), tmp_path / "images")
    second_name = target
    if alias:
        second_name = tmp_path / "alias"
        second_name.symlink_to(target)
    env = cli_env(tmp_path)
    first = start_reseal("generalize", str(target), "--hostname", "first-run", env=env)
    stopped = False
    try:
        deadline = time.monotonic() + 60
        while not _locked_by_someone(target):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGSTOP)
        stopped = True
        second = reseal("generalize", str(second_name), "--hostname", "second-run", env=env)
        assert second.returncode == 2, second.stderr
        assert "another reseal run is using it" in second.stderr
        undo = reseal("undo", str(second_name), str(tmp_path / "no-journal"), env=env)
        assert undo.returncode == 2
        dry = reseal("generalize", str(second_name), "--dry-run", env=env)
        assert dry.returncode == 2 and "another reseal run" in dry.stderr
    finally:
        if stopped:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # the lock is gone with the run: a new run goes ahead
    again = reseal("generalize", str(second_name), "--hostname", "third-run", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert journal_of(again.stdout).is_dir()


def test_partition_and_disk_share_one_lock(linux_gpt: SampleImage, tmp_path: Path) -> None:
    image = copy_sample(linux_gpt, tmp_path)
    disk = subprocess.run(["losetup", "--find", "--show", "--read-only", str(image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        subprocess.run(["partx", "-u", disk], check=True, capture_output=True)
        assert target_key(f"{disk}p1") == target_key(f"{disk}p2") == target_key(disk)
        assert target_key(image) != target_key(disk)  # the file is not the device
    finally:
        subprocess.run(["partx", "-d", disk], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", disk], capture_output=True, check=False)


def test_batch_naming_one_image_twice_is_refused(linux_gpt: SampleImage, tmp_path: Path) -> None:
    image = copy_sample(linux_gpt, tmp_path / "images", "one.img")
    (tmp_path / "images" / "two.img").symlink_to(image)
    answer = tmp_path / "batch.yaml"
    answer.write_text(
        "version: 1\nos: linux\nmachines:\n"
        f"  - hostname: machine-a\n    target: {image}\n"
        f"  - hostname: machine-b\n    target: {tmp_path / 'images' / 'two.img'}\n"
        f"batch:\n  state_dir: {tmp_path / 'batch-state'}\n")
    before = file_sha256(image)
    done = reseal("batch", str(answer), "--jobs", "2", env=cli_env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "duplicate target" in done.stderr
    assert file_sha256(image) == before
    assert not (tmp_path / "batch-state").exists()


def test_lock_is_reentrant_and_shared_for_readers(tmp_path: Path) -> None:
    from reseal.image.lock import target_lock

    target = linux_root(tmp_path / "root")
    with target_lock(target), target_lock(target, exclusive=False), target_lock(target):
        assert _locked_by_someone(target)
    assert not _locked_by_someone(target)
    with target_lock(target, exclusive=False):
        # another process reading is fine; another one writing is refused
        lock = LOCK_DIR / target_key(target)
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_a_run_right_after_another_waits_for_its_loop_devices(linux_gpt: SampleImage,
                                                              tmp_path: Path) -> None:
    """The kernel detaches an autoclear loop device after its last user is gone, on its own
    time: the next run waits for that (bounded) instead of refusing the image; a loop device
    someone set up and keeps (no autoclear) is refused at once."""
    import threading

    from reseal.errors import Refused
    from reseal.image.attach import attach_loop, refuse_if_in_use

    image = copy_sample(linux_gpt, tmp_path)
    dying = attach_loop(image, 0, 1 << 20, read_only=True)  # autoclear, like every run's
    closer = threading.Timer(0.5, dying.close)
    started = time.monotonic()
    closer.start()
    try:
        refuse_if_in_use(image)
    finally:
        closer.join()
        dying.close()
    assert time.monotonic() - started >= 0.4
    kept = subprocess.run(["losetup", "--find", "--show", "--read-only", str(image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    try:
        started = time.monotonic()
        with pytest.raises(Refused, match="already attached"):
            refuse_if_in_use(image)
        assert time.monotonic() - started < 1
    finally:
        subprocess.run(["losetup", "-d", kept], check=False)
