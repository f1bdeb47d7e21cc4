"""The clone's first-boot program: join the domain under its own name, run first-boot commands.

Installed offline by `linux-domain-join` as a zipapp (this module, the LDAP account module and
ldap3) that needs only the guest's python3 (3.8+), run once by `reseal-firstboot.service`.

What it does, in order, each step safe to repeat after a crash or a power cut:
1. Bind to a DC over LDAPS as NAME$ with the one-time password the imaging host pre-staged,
   change the password to a fresh random one (delete old + add new `unicodePwd`: a Change,
   not a Reset), set its own dNSHostName and SPNs, read back `msDS-KeyVersionNumber`, and
   write /etc/krb5.keytab (0600, atomically; entries of other principals are kept).
   The new password is saved (0600) before the change, so a crash between the change and
   the keytab is recovered on the next run by binding with it.
2. Delete the one-time password.
3. Run `firstboot.commands`, each with /bin/sh, output and exit code logged, each once.
4. Mark itself done and remove its `multi-user.target.wants` link: it never runs again.

A DC that cannot be reached is retried a bounded number of times with a growing delay,
each attempt logged (journalctl -u reseal-firstboot); then the program exits 1 and the unit
stays enabled for the next boot. A refusal (wrong password, certificate) is not retried.
Secrets never reach the log. Python 3.8+: no newer syntax at run time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIG_PATH = "/etc/reseal/firstboot.json"
STATE_DIR = "/var/lib/reseal-firstboot"
ONE_TIME_PASSWORD = STATE_DIR + "/one-time-password"
PENDING_PASSWORD = STATE_DIR + "/pending-password"
JOINED_STAMP = STATE_DIR + "/joined"
DONE_STAMP = STATE_DIR + "/done"
COMMANDS_STATE = STATE_DIR + "/commands-done"
UNIT_NAME = "reseal-firstboot.service"
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/" + UNIT_NAME
KEYTAB = "/etc/krb5.keytab"
CONFIG_VERSION = 1
COMMAND_TIMEOUT = 1800


def log(message: str) -> None:
    print(f"reseal-firstboot: {message}", flush=True)


class Paths:
    """Guest paths, below `root` (/ on the clone; a directory in tests and benchmarks)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def __call__(self, guest_path: str) -> Path:
        return self.root / guest_path.lstrip("/")


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temporary file, fsync, rename, fsync the directory: a crash leaves old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(str(tmp), str(path))
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(str(directory), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    try:
        os.unlink(str(path))
    except FileNotFoundError:
        return
    sync_directory(path.parent)


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


# --- the join ---------------------------------------------------------------------------


def _endpoint(domain: dict[str, Any], paths: Paths) -> Any:
    from reseal.domain.ldapacct import Endpoint

    ca = domain.get("ca_file")
    return Endpoint(address=domain["address"], server_name=domain["server_name"],
                    tls=domain.get("tls", "ldaps"), port=domain.get("port"),
                    ca_file=paths(ca) if ca else None,
                    timeout=float(domain.get("timeout", 10)))


def _open_as_machine(domain: dict[str, Any], paths: Paths) -> tuple[Any, str, bool]:
    """A session bound as NAME$: with the saved new password if a change was already under
    way, else with the one-time password. Returns (session, password, already_changed)."""
    from reseal.domain.ldapacct import AccountSession, DomainError, DomainUnreachable

    endpoint = _endpoint(domain, paths)
    account = domain["sam_account_name"]
    pending = read_secret(paths(PENDING_PASSWORD))
    if pending is not None:
        try:
            return AccountSession.open(endpoint, account, pending, domain["name"]), pending, True
        except DomainUnreachable:
            raise
        except DomainError:
            log("the saved new password does not bind: the change did not happen; "
                "trying the one-time password")
    one_time = read_secret(paths(ONE_TIME_PASSWORD))
    if one_time is None:
        raise DomainError("no one-time password left in " + ONE_TIME_PASSWORD +
                          "; pre-stage the account again (reseal generalize) or join by hand")
    return AccountSession.open(endpoint, account, one_time, domain["name"]), one_time, False


def join(config: dict[str, Any], paths: Paths) -> int:
    """One join attempt; returns the new kvno. Raises DomainError / DomainUnreachable."""
    from reseal.domain import keytab, krbkeys
    from reseal.domain.passwords import machine_password

    domain = config["domain"]
    session, password, changed = _open_as_machine(domain, paths)
    with session:
        dn = domain["account_dn"]
        if not changed:
            new = machine_password()
            write_private(paths(PENDING_PASSWORD), new.encode("ascii"))
            session.change_password(dn, password, new)
            password = new
            log(f"changed the machine password of {domain['sam_account_name']} "
                "(one-time password retired)")
        else:
            log("a password change from an earlier run took effect; finishing that join")
        spns = domain.get("spns") or []
        session.update_computer(dn, dns_host_name=config["fqdn"], spns=spns or None)
        kvno = session.key_version(dn)
    realm = domain["name"].upper()
    keys = krbkeys.derive_keys(password, krbkeys.computer_salt(realm, domain["computer_name"]),
                               krbkeys.enctypes_for(int(domain.get("enctypes", 0x18))))
    entries = keytab.machine_entries(realm, domain["computer_name"], config["fqdn"], kvno, keys)
    path = paths(KEYTAB)
    existing: list[Any] = []
    if path.exists():
        try:
            existing = keytab.parse_keytab(path.read_bytes())
        except keytab.KeytabError as exc:
            log(f"{KEYTAB} was unreadable ({exc}); writing a new one")
    write_private(path, keytab.serialize_keytab(keytab.replace_principals(existing, entries)))
    log(f"wrote {KEYTAB}: {len(entries)} keys for {domain['sam_account_name']}@{realm}, "
        f"kvno {kvno}")
    remove(paths(ONE_TIME_PASSWORD))
    write_private(paths(JOINED_STAMP), f"{domain['sam_account_name']}@{realm} kvno {kvno}\n"
                  .encode("ascii"), 0o644)
    remove(paths(PENDING_PASSWORD))
    return kvno


def join_with_retries(config: dict[str, Any], paths: Paths,
                      sleep: Any = time.sleep) -> bool:
    from reseal.domain.ldapacct import DomainError, DomainUnreachable

    retry = config.get("retry", {})
    attempts = max(1, int(retry.get("attempts", 6)))
    delay = float(retry.get("first_delay", 5))
    max_delay = float(retry.get("max_delay", 60))
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            join(config, paths)
            log(f"joined {config['domain']['name']} as {config['domain']['sam_account_name']} "
                f"(attempt {attempt}/{attempts}, {time.monotonic() - started:.2f} s)")
            return True
        except DomainUnreachable as exc:
            if attempt == attempts:
                log(f"attempt {attempt}/{attempts} failed: {exc}; giving up for this boot, "
                    "the unit runs again at the next boot")
                return False
            log(f"attempt {attempt}/{attempts} failed: {exc}; next attempt in {delay:.0f} s")
            sleep(delay)
            delay = min(delay * 2, max_delay)
        except DomainError as exc:
            log(f"the domain refused the join: {exc}; not retried in this boot (the unit "
                "stays enabled: fix the account on the DC, then reboot)")
            return False
    return False


# --- first-boot commands ----------------------------------------------------------------


def run_commands(config: dict[str, Any], paths: Paths) -> None:
    commands = config.get("commands") or []
    state_path = paths(COMMANDS_STATE)
    try:
        done = int(state_path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        done = 0
    for index in range(done, len(commands)):
        command = commands[index]
        log(f"command {index + 1}/{len(commands)}: {command}")
        try:
            result = subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    timeout=COMMAND_TIMEOUT, cwd=str(paths("/")))
            for line in result.stdout.decode("utf-8", errors="replace").splitlines()[-200:]:
                log(f"  | {line}")
            log(f"command {index + 1}/{len(commands)} exited with {result.returncode}")
        except subprocess.TimeoutExpired:
            log(f"command {index + 1}/{len(commands)} killed after {COMMAND_TIMEOUT} s")
        except OSError as exc:
            log(f"command {index + 1}/{len(commands)} could not start: {exc.strerror}")
        # each command runs once, whatever its exit code: record it before the next one
        write_private(state_path, f"{index + 1}\n".encode("ascii"), 0o644)


def finish(paths: Paths) -> None:
    write_private(paths(DONE_STAMP), b"done\n", 0o644)
    link = paths(WANTS_LINK)
    if os.path.lexists(str(link)):
        os.unlink(str(link))
        sync_directory(link.parent)
    log(f"first boot complete; {UNIT_NAME} disabled itself")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reseal-firstboot")
    parser.add_argument("--root", default="/", help="the system's root (tests only)")
    parser.add_argument("--config", default=CONFIG_PATH)
    args = parser.parse_args(argv)
    paths = Paths(args.root)
    if paths(DONE_STAMP).exists():
        log("already done; nothing to do")
        link = paths(WANTS_LINK)
        if os.path.lexists(str(link)):
            os.unlink(str(link))
        return 0
    try:
        config = json.loads(paths(args.config).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log(f"cannot read {args.config}: {exc}")
        return 1
    if config.get("version") != CONFIG_VERSION:
        log(f"{args.config}: version {config.get('version')!r} is not {CONFIG_VERSION}")
        return 1
    if config.get("domain") and not paths(JOINED_STAMP).exists():
        if not join_with_retries(config, paths):
            return 1
    elif config.get("domain"):
        log("already joined; skipping the join")
    run_commands(config, paths)
    finish(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
