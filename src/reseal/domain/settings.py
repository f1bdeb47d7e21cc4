"""What the answer file's `domain:` and `firstboot:` sections ask for, as typed values.

The answer-file loader (`reseal.pipeline.answerfile`) and `reseal generalize --join-domain`
build these; they travel to the operations inside `IdentityRequest` (`request.domain`,
`request.firstboot`). Pure data: a plan can be printed, pickled to a batch worker, and
never holds a secret (a `PasswordRef` says where the join password is, not what it is).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reseal.domain.krbkeys import AES_AND_RC4, AES_ONLY
from reseal.domain.ldapacct import Endpoint
from reseal.errors import BadInput

DOMAIN_MODES = ("firstboot", "offline")
TLS_MODES = ("ldaps", "starttls")
ENCTYPE_CHOICES = {"aes": AES_ONLY, "aes+rc4": AES_AND_RC4}
MAX_PASSWORD_BYTES = 4096


@dataclass(frozen=True)
class PasswordRef:
    """Where a join password comes from at run time; the secret itself is never stored."""

    file: Path | None = None  # password_file: read when the join runs
    env: str | None = None  # password_env: name of an environment variable

    def describe(self) -> str:
        """A printable form that never contains the secret."""
        if self.file is not None:
            return f"password_file:{self.file}"
        if self.env is not None:
            return f"password_env:{self.env}"
        return "none"

    def read(self) -> str:
        """The password (first line of the file, or the variable); BadInput when absent."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise BadInput(f"password_env: the environment variable {self.env} is not set "
                               "or empty; export it before the run")
            return value
        if self.file is not None:
            try:
                with open(self.file, "rb") as handle:
                    data = handle.read(MAX_PASSWORD_BYTES + 1)
            except OSError as exc:
                raise BadInput(f"{self.file}: cannot read the join password file "
                               f"({exc.strerror})") from None
            if len(data) > MAX_PASSWORD_BYTES:
                raise BadInput(f"{self.file}: larger than a password file can be "
                               f"({MAX_PASSWORD_BYTES} bytes)")
            lines = data.decode("utf-8", errors="strict").splitlines()
            if not lines or not lines[0]:
                raise BadInput(f"{self.file}: the join password file is empty")
            return lines[0]
        raise BadInput("no join password: give password_file or password_env")


@dataclass(frozen=True)
class DomainSettings:
    """An Active Directory join: which domain, where the account goes, how to reach a DC."""

    name: str  # DNS name of the domain, e.g. corp.example.com
    ou: str | None = None  # DN of the container for the account (default: Computers)
    account: str | None = None  # join account, e.g. "CORP\\joiner" or joiner@corp.example.com
    password: PasswordRef | None = None
    mode: str = "firstboot"  # "firstboot": pre-stage + join at first boot; "offline": all now
    controller: str | None = None  # the DC's DNS name (its certificate must name it)
    address: str | None = None  # where the imaging host reaches the DC (default: controller)
    firstboot_address: str | None = None  # where the clone reaches it (default: controller)
    tls: str = "ldaps"  # "ldaps" or "starttls"
    port: int | None = None
    ca_file: Path | None = None  # CA of the DC's certificate (default: system CAs)
    reuse_existing: bool = False  # take over an existing account of the clone's name
    enctypes: str = "aes"  # "aes" (0x18) or "aes+rc4" (0x1C)

    @property
    def realm(self) -> str:
        return self.name.upper()

    @property
    def controller_name(self) -> str:
        return (self.controller or self.name).lower()

    @property
    def enctype_bits(self) -> int:
        return ENCTYPE_CHOICES[self.enctypes]

    def problems(self) -> list[str]:
        """What is wrong with these settings (empty when they can be used)."""
        found = []
        if self.mode not in DOMAIN_MODES:
            found.append(f"mode {self.mode!r}: must be firstboot or offline")
        if self.tls not in TLS_MODES:
            found.append(f"tls {self.tls!r}: must be ldaps or starttls (plain LDAP would send "
                         "passwords in clear)")
        if self.enctypes not in ENCTYPE_CHOICES:
            found.append(f"enctypes {self.enctypes!r}: must be aes or aes+rc4")
        if self.port is not None and not 0 < self.port < 65536:
            found.append(f"port {self.port}: not a TCP port")
        if self.account is None or self.password is None:
            found.append("the join needs account and password_file or password_env")
        return found

    def endpoint(self, *, for_clone: bool = False, timeout: float = 10.0) -> Endpoint:
        """Where the imaging host (or, `for_clone`, the clone) reaches the DC."""
        address = (self.firstboot_address if for_clone else self.address) or \
            self.controller_name
        return Endpoint(address=address, server_name=self.controller_name, tls=self.tls,
                        port=self.port, ca_file=self.ca_file, timeout=timeout)


@dataclass(frozen=True)
class FirstBootSettings:
    """What the clone does on its first boot."""

    registered_owner: str | None = None
    registered_organization: str | None = None
    timezone: str | None = None
    locale: str | None = None
    commands: tuple[str, ...] = ()  # run inside the guest on first boot, never by reseal
