"""Installing the first-boot hook into a Linux image, offline.

What goes in (all through GuestFS, so journaled and undone by `reseal undo`):
- /usr/local/lib/reseal/reseal-firstboot.pyz: a zipapp with `reseal.domain.firstboot`, the
  LDAP account module and the pure-Python ldap3 and pyasn1 (no compiled code: it runs on the
  guest's own python3, 3.8 or later);
- /etc/systemd/system/reseal-firstboot.service and its multi-user.target.wants link;
- /etc/reseal/firstboot.json (0600): names, the DC to reach, commands — no secret;
- /etc/reseal/domain-ca.pem: the CA that signed the DC's certificate (public);
- /var/lib/reseal-firstboot/one-time-password (0600, directory 0700): the pre-stage secret,
  deleted by the program once the machine has changed its password.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import marshal
import re
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseal.domain import firstboot
from reseal.errors import BadInput
from reseal.image.guestfs import GuestFS

ZIPAPP_PATH = "/usr/local/lib/reseal/reseal-firstboot.pyz"
UNIT_PATH = "/etc/systemd/system/" + firstboot.UNIT_NAME
CA_PATH = "/etc/reseal/domain-ca.pem"
GUEST_PYTHON = "/usr/bin/python3"
MIN_PYTHON = (3, 8)
# the modules of reseal the program imports (nothing that pulls in the imaging host's code)
RESEAL_MODULES = ("reseal/__init__.py", "reseal/errors.py", "reseal/domain/__init__.py",
                  "reseal/domain/_purecrypto.py", "reseal/domain/krbkeys.py",
                  "reseal/domain/keytab.py", "reseal/domain/passwords.py",
                  "reseal/domain/ldapacct.py", "reseal/domain/firstboot.py")
THIRD_PARTY = ("ldap3", "pyasn1")
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed: the same program gives the same bytes
STDLIB_NEEDED = ("ssl.py", "json/__init__.py", "dataclasses.py", "secrets.py", "hashlib.py")

UNIT_TEXT = """\
# Installed by reseal: runs once on the clone's first boot, then disables itself.
[Unit]
Description=reseal first boot: join the domain under this machine's own name, run first-boot commands
Wants=network-online.target
After=network-online.target
ConditionPathExists={config}

[Service]
Type=oneshot
ExecStart={python} {zipapp}
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=20min

[Install]
WantedBy=multi-user.target
"""


@dataclass
class HookPlan:
    """What the program on the clone is told (written as /etc/reseal/firstboot.json)."""

    hostname: str
    fqdn: str
    commands: list[str] = field(default_factory=list)
    domain: dict[str, Any] | None = None  # None: commands only
    retry: dict[str, float] = field(default_factory=lambda: {
        "attempts": 6, "first_delay": 5, "max_delay": 60})

    def to_json(self) -> bytes:
        body = {"version": firstboot.CONFIG_VERSION, "hostname": self.hostname,
                "fqdn": self.fqdn, "commands": self.commands, "retry": self.retry}
        if self.domain is not None:
            body["domain"] = self.domain
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")


@functools.lru_cache(maxsize=2)
def zipapp_bytes(compiled: bool = False) -> bytes:
    """The first-boot program as a zipapp (built once per process, byte-for-byte stable).

    `compiled`: also carry bytecode for this interpreter's version (unchecked-hash .pyc
    beside each .py, which zipimport uses when the guest's Python has the same magic number
    and ignores otherwise): importing ldap3 from source costs seconds on a slow first boot."""
    reseal_root = Path(__file__).resolve().parent.parent.parent  # .../src (or site-packages)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
            if compiled and name.endswith(".py") and name != "__main__.py":
                code = compile(data, name, "exec", dont_inherit=True)
                header = importlib.util.MAGIC_NUMBER + struct.pack("<I", 0b01) + \
                    importlib.util.source_hash(data)  # hash-based, unchecked (PEP 552)
                add(name + "c", header + marshal.dumps(code))

        add("__main__.py", b"import sys\nfrom reseal.domain.firstboot import main\n"
                           b"sys.exit(main())\n")
        for name in RESEAL_MODULES:
            add(name, (reseal_root / name).read_bytes())
        for package in THIRD_PARTY:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise BadInput(f"the first-boot program needs the Python package {package}; "
                               "install reseal's dependencies")
            base = Path(next(iter(spec.submodule_search_locations)))
            for source in sorted(base.rglob("*.py")):
                add(f"{package}/{source.relative_to(base).as_posix()}", source.read_bytes())
    return buffer.getvalue()


def guest_python_version(fs: GuestFS) -> tuple[int, int] | None:
    found = _guest_stdlibs(fs)
    return max(found)[0] if found else None


def _guest_stdlibs(fs: GuestFS) -> list[tuple[tuple[int, int], str]]:
    versions = []
    for lib in ("/usr/lib", "/usr/lib64"):
        if not fs.is_dir(lib):
            continue
        for name in fs.listdir(lib):
            match = re.fullmatch(r"python3\.(\d+)", name)
            if match and fs.is_file(f"{lib}/{name}/os.py"):
                versions.append(((3, int(match.group(1))), f"{lib}/{name}"))
    return versions


def guest_python_problem(fs: GuestFS) -> str | None:
    """Why the image cannot run the first-boot program, or None when it can."""
    if not fs.exists(GUEST_PYTHON):
        return f"the image has no {GUEST_PYTHON}"
    versions = _guest_stdlibs(fs)
    if not versions:
        return f"the image has {GUEST_PYTHON} but no Python 3 standard library"
    version, stdlib = max(versions)
    if version < MIN_PYTHON:
        return (f"the image's python3 is {version[0]}.{version[1]}; the first-boot program "
                f"needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later")
    missing = [name for name in STDLIB_NEEDED if not fs.exists(f"{stdlib}/{name}")]
    if missing:
        return (f"the image's Python {version[0]}.{version[1]} lacks {', '.join(missing)} "
                "(only a minimal Python is installed: install python3)")
    return None


def install_hook(fs: GuestFS, plan: HookPlan, *, one_time_password: str | None,
                 ca_pem: bytes | None) -> list[str]:
    """Write the hook into the image; returns the guest paths written."""
    written = []
    fs.mkdir("/usr/local/lib/reseal")
    same_python = guest_python_version(fs) == tuple(sys.version_info[:2])
    fs.write_bytes(ZIPAPP_PATH, zipapp_bytes(compiled=same_python), mode=0o644)
    written.append(ZIPAPP_PATH)
    fs.mkdir("/etc/reseal")
    if ca_pem is not None:
        fs.write_bytes(CA_PATH, ca_pem, mode=0o644)
        written.append(CA_PATH)
    fs.write_bytes(firstboot.CONFIG_PATH, plan.to_json(), mode=0o600)
    written.append(firstboot.CONFIG_PATH)
    fs.mkdir(firstboot.STATE_DIR, mode=0o700)
    for stale in (firstboot.DONE_STAMP, firstboot.JOINED_STAMP, firstboot.COMMANDS_STATE,
                  firstboot.PENDING_PASSWORD):
        if fs.exists(stale):  # a hook of an earlier run of the master: start over
            fs.remove(stale)
    if one_time_password is not None:
        fs.write_bytes(firstboot.ONE_TIME_PASSWORD, one_time_password.encode("ascii"),
                       mode=0o600)
        written.append(firstboot.ONE_TIME_PASSWORD)
    fs.mkdir("/etc/systemd/system/multi-user.target.wants")
    fs.write_text(UNIT_PATH, UNIT_TEXT.format(config=firstboot.CONFIG_PATH,
                                              python=GUEST_PYTHON, zipapp=ZIPAPP_PATH),
                  mode=0o644)
    written.append(UNIT_PATH)
    fs.symlink(firstboot.WANTS_LINK, UNIT_PATH)
    written.append(firstboot.WANTS_LINK)
    return written
