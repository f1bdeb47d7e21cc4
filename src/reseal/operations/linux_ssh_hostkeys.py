"""linux-ssh-hostkeys: clones must not share the master's SSH host keys.

New keys are made with the host's ssh-keygen (never a binary from the image) in a private
temporary directory, then copied into the image's /etc/ssh through GuestFS: private keys 0600,
public keys 0644, owned by root (old files are removed first so the new ones are created by
root rather than inheriting the old owner).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.errors import BadInput, ResealError
from reseal.image.guestfs import SMALL_LIMIT, GuestFS
from reseal.image.model import OSFamily
from reseal.linux.guest import os_release
from reseal.linux.osrelease import Family
from reseal.linux.ssh import ssh_fingerprint
from reseal.operations._linux_support import preflight
from reseal.operations.base import IdentityRequest, Operation, OperationContext

ORDER = 22
SSH_DIR = "/etc/ssh"
KEY_TYPES = ("rsa", "ecdsa", "ed25519", "dsa")
DEFAULT_TYPES = ("rsa", "ecdsa", "ed25519")
KEY_FILE = re.compile(r"^ssh_host_([a-z0-9]+)_key$")
MODES = ("generate", "remove")
# Units that make missing host keys on boot, per distribution.
REGENERATING_UNITS = (
    "/usr/lib/systemd/system/sshd-keygen@.service",  # Fedora/RHEL
    "/usr/lib/systemd/system/sshdgenkeys.service",  # Arch
    "/usr/lib/systemd/system/sshd-gen-keys-start.service",  # SUSE
    "/lib/systemd/system/sshd-keygen@.service",
)


RSA_BITS = (2048, 16384)  # below: refused as weak; above: OpenSSH's own maximum


@dataclass
class SshHostKeyOptions:
    mode: str = "generate"  # "generate" now, or "remove" for regeneration on first boot
    types: list[str] = field(default_factory=list)  # empty: the types the image had
    rsa_bits: int = 3072

    def __post_init__(self) -> None:
        # checked when the answer file is read, so a dry run refuses what the run would
        _check_rsa_bits(self.rsa_bits)


def _check_rsa_bits(bits: object) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not (
            RSA_BITS[0] <= bits <= RSA_BITS[1]):
        raise BadInput(f"linux-ssh-hostkeys: rsa_bits {bits!r} is out of range; use "
                       f"{RSA_BITS[0]} to {RSA_BITS[1]} (3072 is the default)")


def validate(request: IdentityRequest, options: Any) -> None:
    if not isinstance(options, SshHostKeyOptions):
        return
    if options.mode not in MODES:
        raise BadInput(f"linux-ssh-hostkeys: mode {options.mode!r} is not one of {', '.join(MODES)}")
    for key_type in options.types:
        if key_type not in KEY_TYPES:
            raise BadInput(
                f"linux-ssh-hostkeys: key type {key_type!r} is not one of {', '.join(KEY_TYPES)}"
            )
    _check_rsa_bits(options.rsa_bits)


def fingerprint(public_line: str) -> str | None:
    """OpenSSH SHA256 fingerprint of a public key line ("ssh-ed25519 AAAA... comment")."""
    parsed = ssh_fingerprint(public_line)
    return parsed[1] if parsed else None


def existing_key_types(fs: GuestFS) -> list[str]:
    found = []
    for name in fs.listdir(SSH_DIR):
        match = KEY_FILE.match(name)
        if match:
            found.append(match.group(1))
    return [t for t in KEY_TYPES if t in found] + sorted(set(found) - set(KEY_TYPES))


def host_fingerprints(fs: GuestFS) -> dict[str, str]:
    """key type -> fingerprint of the image's host public keys."""
    prints = {}
    for key_type in existing_key_types(fs):
        path = f"{SSH_DIR}/ssh_host_{key_type}_key.pub"
        if fs.is_file(path):
            value = fingerprint(fs.read_text(path, limit=SMALL_LIMIT))
            if value:
                prints[key_type] = value
    return prints


def apply(ctx: OperationContext) -> None:
    options = ctx.options if isinstance(ctx.options, SshHostKeyOptions) else SshHostKeyOptions()
    validate(ctx.request, options)
    preflight(ctx)
    fs = ctx.system.fs
    if not fs.is_dir(SSH_DIR):
        ctx.note("no /etc/ssh in the image: nothing to do")
        return
    had = existing_key_types(fs)
    old_prints = host_fingerprints(fs)
    types = options.types or [t for t in had if t in KEY_TYPES] or list(DEFAULT_TYPES)
    if not had and not options.types:
        ctx.note("the image had no SSH host keys; none are added (ask for types to add some)")
        return

    for key_type in had:
        for suffix in ("", ".pub", "-cert.pub"):
            path = f"{SSH_DIR}/ssh_host_{key_type}_key{suffix}"
            if fs.exists(path):
                fs.remove(path)
                ctx.change(path, "remove", old_prints.get(key_type) if suffix == ".pub" else None)

    if options.mode == "remove":
        for key_type in had:
            ctx.identity(f"ssh-host-key:{key_type}", old_prints.get(key_type), None)
        _warn_if_not_regenerated(ctx)
        return

    comment = f"root@{ctx.request.hostname}" if ctx.request.hostname else "root@localhost"
    if ctx.dry_run:
        for key_type in types:
            ctx.change(f"{SSH_DIR}/ssh_host_{key_type}_key", "create", None, "(new key)")
            ctx.identity(f"ssh-host-key:{key_type}", old_prints.get(key_type), "(new key)")
        return
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise ResealError(
            "linux-ssh-hostkeys: ssh-keygen is not installed on this host; "
            "install openssh-client or use mode=remove"
        )
    with tempfile.TemporaryDirectory(prefix="reseal-ssh-") as tmp:
        # the key types are generated in parallel: RSA alone takes most of a second
        running = {}
        for key_type in types:
            private = Path(tmp) / f"ssh_host_{key_type}_key"
            argv = [keygen, "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(private)]
            if key_type == "rsa":
                argv[2:2] = ["-b", str(options.rsa_bits)]
            running[key_type] = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.PIPE, text=True)
        failures = []
        for key_type, process in running.items():
            _out, err = process.communicate(timeout=120)
            if process.returncode != 0:
                failures.append(f"ssh-keygen -t {key_type} failed: {err.strip() or process.returncode}")
        if failures:
            raise ResealError(f"linux-ssh-hostkeys: {'; '.join(failures)}")
        for key_type in types:
            private = Path(tmp) / f"ssh_host_{key_type}_key"
            public_text = private.with_suffix(".pub").read_text()
            guest = f"{SSH_DIR}/ssh_host_{key_type}_key"
            fs.copy_in(private, guest, mode=0o600)
            fs.copy_in(private.with_suffix(".pub"), guest + ".pub", mode=0o644)
            new_print = fingerprint(public_text)
            ctx.change(guest + ".pub", "create", old_prints.get(key_type), new_print)
            ctx.identity(f"ssh-host-key:{key_type}", old_prints.get(key_type), new_print)


def _warn_if_not_regenerated(ctx: OperationContext) -> None:
    fs = ctx.system.fs
    if any(fs.exists(unit) for unit in REGENERATING_UNITS):
        ctx.note("host keys removed; the image makes new ones on first boot")
    elif os_release(fs).family is Family.DEBIAN:
        ctx.warn("host keys removed, but Debian/Ubuntu do not make new ones on boot: sshd will "
                 "not start until `ssh-keygen -A` runs in the clone (use mode=generate)")
    else:
        ctx.warn("host keys removed and no key-generating unit found: check that the clone "
                 "runs `ssh-keygen -A` before sshd")


OPERATION = Operation(
    name="linux-ssh-hostkeys",
    description="replace the SSH host keys with new ones made offline (or remove them for "
    "first boot); fingerprints in the report",
    os=OSFamily.LINUX,
    default_enabled=True,
    apply=apply,
    options_type=SshHostKeyOptions,
)
