"""A run killed at any step of replacing the SSH host keys leaves a full set of host keys:
every key type the image had has a private and a public key that ssh-keygen reads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reseal.image.guestfs import GuestFS
from reseal.operations.base import IdentityRequest
from reseal.pipeline.runner import RunSettings, run_generalize

KEY_TYPES = ("ecdsa", "ed25519")  # RSA would only make the test slow
MUTATIONS = ("write_bytes", "remove", "replace_with", "rename", "mkdir", "rmdir", "symlink")


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (no except clause of reseal catches it)."""


def _image(root: Path) -> Path:
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    for key_type in KEY_TYPES:
        subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f",
                        str(root / f"etc/ssh/ssh_host_{key_type}_key")], check=True)
    (root / "etc/ssh/ssh_host_ed25519_key-cert.pub").write_text("ssh-ed25519-cert-v01@openssh.com x\n")
    return root


def _full_set(root: Path) -> list[str]:
    """What is missing or unreadable among the host keys."""
    problems = []
    for key_type in KEY_TYPES:
        for name in (f"ssh_host_{key_type}_key", f"ssh_host_{key_type}_key.pub"):
            path = root / "etc/ssh" / name
            if not path.is_file():
                problems.append(f"{name} missing")
                continue
            read = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True)
            if read.returncode != 0:
                problems.append(f"{name} unreadable")
    return problems


def _mutations_of_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    count = 0
    for name in MUTATIONS:
        real = getattr(GuestFS, name, None)
        if real is None:
            continue

        def counting(self: GuestFS, *args: object, _real: object = real, **kwargs: object
                     ) -> object:
            nonlocal count
            count += 1
            return _real(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(GuestFS, name, counting)
    root = _image(tmp_path / "count")
    run_generalize(root, _settings(), run_dir=tmp_path / "run-count")
    monkeypatch.undo()
    return count


def _settings() -> RunSettings:
    return RunSettings(request=IdentityRequest(hostname="clone"), only=["linux-ssh-hostkeys"])


def test_every_kill_point_leaves_a_full_key_set(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    total = _mutations_of_one_run(tmp_path, monkeypatch)
    assert total >= 2 * len(KEY_TYPES)
    for kill_at in range(1, total + 1):
        root = _image(tmp_path / f"root-{kill_at}")
        seen = 0
        for name in MUTATIONS:
            real = getattr(GuestFS, name, None)
            if real is None:
                continue

            def dying(self: GuestFS, *args: object, _real: object = real,
                      _kill_at: int = kill_at, **kwargs: object) -> object:
                nonlocal seen
                seen += 1
                if seen == _kill_at:
                    raise Killed()
                return _real(self, *args, **kwargs)  # type: ignore[operator]

            monkeypatch.setattr(GuestFS, name, dying)
        with pytest.raises(Killed):
            run_generalize(root, _settings(), run_dir=tmp_path / f"run-{kill_at}")
        monkeypatch.undo()
        assert _full_set(root) == [], f"killed before mutation {kill_at} of {total}"


def test_new_keys_replace_the_old_and_old_certificates_go(tmp_path: Path) -> None:
    root = _image(tmp_path / "root")
    old = {t: (root / f"etc/ssh/ssh_host_{t}_key.pub").read_text() for t in KEY_TYPES}
    result = run_generalize(root, _settings(), run_dir=tmp_path / "run")
    assert result.ok
    assert _full_set(root) == []
    for key_type in KEY_TYPES:
        assert (root / f"etc/ssh/ssh_host_{key_type}_key.pub").read_text() != old[key_type]
    assert not (root / "etc/ssh/ssh_host_ed25519_key-cert.pub").exists()
    assert not [p for p in (root / "etc/ssh").iterdir() if p.name.startswith(".reseal")]
