"""linux-ssh-hostkeys: clones must not share the master's SSH host keys.

New keys are made with the host's ssh-keygen (never a binary from the image) in a private
work directory (never /tmp; see `reseal.image.workdirs`), then written into the image's
/etc/ssh through GuestFS as new files beside the old ones (private keys 0600, public keys 0644,
owned by root, never inheriting an old owner) and renamed over them, so a run killed at any
moment leaves a full set of host keys, old or new. Only then are key types that are not kept,
and certificates of the old keys, removed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.errors import BadInput, ResealError
from reseal.fileio import TEMP_PREFIX
from reseal.image.guestfs import SMALL_LIMIT, GuestFS
from reseal.image.model import OSFamily
from reseal.image.workdirs import work_dir
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
STAGED_PREFIX = f"{TEMP_PREFIX}key-"  # a new key beside the old one, before the rename
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

    if options.mode == "remove":
        _remove_keys(ctx, had, old_prints)
        for key_type in had:
            ctx.identity(f"ssh-host-key:{key_type}", old_prints.get(key_type), None)
        _warn_if_not_regenerated(ctx)
        return

    comment = f"root@{ctx.request.hostname}" if ctx.request.hostname else "root@localhost"
    if ctx.dry_run:
        for key_type in types:
            ctx.change(f"{SSH_DIR}/ssh_host_{key_type}_key", "create", None, "(new key)")
            ctx.identity(f"ssh-host-key:{key_type}", old_prints.get(key_type), "(new key)")
        _remove_keys(ctx, [t for t in had if t not in types], old_prints, certificates_of=had)
        return
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise ResealError(
            "linux-ssh-hostkeys: ssh-keygen is not installed on this host; "
            "install openssh-client or use mode=remove"
        )
    with work_dir("ssh") as tmp:
        keys = _generate(keygen, tmp, types, comment, options.rsa_bits)
        # Every moment leaves a full key set: each new pair is written beside the old one
        # (fresh files, owned by root) and renamed over it; only then is anything removed.
        for key_type, (private, public) in keys.items():
            guest = f"{SSH_DIR}/ssh_host_{key_type}_key"
            staged_private = f"{SSH_DIR}/{STAGED_PREFIX}ssh_host_{key_type}_key"
            staged_public = staged_private + ".pub"
            for staged in (staged_private, staged_public):
                fs.remove(staged)  # a leftover of an interrupted run: never inherit it
            fs.write_bytes(staged_private, private, mode=0o600)
            fs.write_bytes(staged_public, public, mode=0o644)
            fs.replace_with(staged_private, guest)
            fs.replace_with(staged_public, guest + ".pub")
            new_print = fingerprint(public.decode(errors="replace"))
            ctx.change(guest + ".pub", "create", old_prints.get(key_type), new_print)
            ctx.identity(f"ssh-host-key:{key_type}", old_prints.get(key_type), new_print)
    _remove_keys(ctx, [t for t in had if t not in types], old_prints, certificates_of=had)


def _remove_keys(ctx: OperationContext, key_types: list[str], old_prints: dict[str, str],
                 certificates_of: list[str] | None = None) -> None:
    """Remove the key files of `key_types`, and the certificates of `certificates_of` (a
    certificate names the old key: it is wrong for a new one)."""
    fs = ctx.system.fs
    paths = [f"{SSH_DIR}/ssh_host_{t}_key{suffix}" for t in key_types
             for suffix in ("", ".pub", "-cert.pub")]
    paths += [f"{SSH_DIR}/ssh_host_{t}_key-cert.pub" for t in certificates_of or []
              if t not in key_types]
    for path in paths:
        if fs.exists(path):
            fs.remove(path)
            key_type = path.split("ssh_host_", 1)[1].split("_key", 1)[0]
            ctx.change(path, "remove", old_prints.get(key_type) if path.endswith("_key.pub")
                       else None)


def _generate(keygen: str, directory: Path, types: list[str], comment: str, rsa_bits: int
              ) -> dict[str, tuple[bytes, bytes]]:
    """New key pairs (private, public bytes) made by the host's ssh-keygen in `directory`
    (a private work directory, never /tmp), in parallel: RSA alone takes most of a second."""
    running = {}
    for key_type in types:
        private = directory / f"ssh_host_{key_type}_key"
        argv = [keygen, "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(private)]
        if key_type == "rsa":
            argv[2:2] = ["-b", str(rsa_bits)]
        running[key_type] = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True)
    failures = []
    for key_type, process in running.items():
        _out, err = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(f"ssh-keygen -t {key_type} failed: {err.strip() or process.returncode}")
    if failures:
        raise ResealError(f"linux-ssh-hostkeys: {'; '.join(failures)}")
    keys = {}
    for key_type in types:
        private = directory / f"ssh_host_{key_type}_key"
        keys[key_type] = (private.read_bytes(), private.with_suffix(".pub").read_bytes())
        private.unlink()
    return keys


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
