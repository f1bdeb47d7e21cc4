"""The optional credentials of `reseal audit lan --credentials FILE`.

```yaml
smb:                       # LSA with a login when anonymous is refused; remote registry
  username: Administrator
  domain: ""               # "" or "." for a local account
  password_env: AUDIT_SMB_PASSWORD   # or password_file: PATH, or password: TEXT
ssh:                       # /etc/machine-id and the DHCP DUID, read over SSH
  username: root
  key_file: /root/.ssh/audit_ed25519 # and/or password_env / password_file / password
```

The file holds secrets, so it must not be readable by group or others (like ssh's own key
files); the secrets are kept out of every report and log (their repr is hidden).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from reseal.audit.targets import read_bounded
from reseal.errors import BadInput
from reseal.pipeline.yamlsafe import YMap, YScalar, load_yaml

SECTIONS = {"smb": ("username", "domain", "password", "password_env", "password_file"),
            "ssh": ("username", "password", "password_env", "password_file", "key_file", "port")}
MAX_SECRET_FILE = 4096


@dataclass(frozen=True)
class SmbLogin:
    username: str
    domain: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class SshLogin:
    username: str
    password: str = field(default="", repr=False)
    key_file: Path | None = None
    port: int = 22


@dataclass(frozen=True)
class Credentials:
    smb: SmbLogin | None = None
    ssh: SshLogin | None = None


def _scalar(node: object, where: str) -> str:
    if not isinstance(node, YScalar) or isinstance(node.value, bool) or node.value is None:
        raise BadInput(f"{where}: expected a text value")
    return str(node.value)


def _secret(section: YMap, name: str, base: Path) -> str:
    where = f"{base}: {name}"
    given = [k for k in ("password", "password_env", "password_file") if k in section.items]
    if len(given) > 1:
        raise BadInput(f"{where}: give one of password, password_env, password_file, not "
                       f"{' and '.join(given)}")
    if not given:
        return ""
    key = given[0]
    value = _scalar(section.items[key], f"{where}.{key}")
    if key == "password":
        return value
    if key == "password_env":
        if value not in os.environ:
            raise BadInput(f"{where}.password_env: the variable {value} is not set")
        return os.environ[value]
    path = (base.parent / value) if not Path(value).is_absolute() else Path(value)
    data = read_bounded(path, MAX_SECRET_FILE, f"{where}.password_file", "password file")
    return data.decode("utf-8", errors="strict").rstrip("\r\n")


def load_credentials(path: Path) -> Credentials:
    try:
        info = path.stat()
    except OSError as exc:
        raise BadInput(f"--credentials {path}: {exc.strerror}") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise BadInput(f"--credentials {path}: readable by group or others "
                       f"(mode {stat.S_IMODE(info.st_mode):03o}); run chmod 600 {path}")
    root = load_yaml(path, display=str(path))
    if root is None:
        raise BadInput(f"--credentials {path}: the file is empty; give an smb: or ssh: section")
    if not isinstance(root, YMap):
        raise BadInput(f"--credentials {path}: expected a mapping with smb: and/or ssh:")
    smb = ssh = None
    for name, node in root.items.items():
        if name not in SECTIONS:
            raise BadInput(f"{path}: unknown section {name!r}; known: smb, ssh")
        if not isinstance(node, YMap):
            raise BadInput(f"{path}: {name}: expected a mapping")
        for key in node.items:
            if key not in SECTIONS[name]:
                raise BadInput(f"{path}: {name}.{key}: unknown setting; known: "
                               f"{', '.join(SECTIONS[name])}")
        if "username" not in node.items:
            raise BadInput(f"{path}: {name}.username is missing")
        username = _scalar(node.items["username"], f"{path}: {name}.username")
        password = _secret(node, name, path)
        if name == "smb":
            domain = _scalar(node.items["domain"], f"{path}: smb.domain") \
                if "domain" in node.items else ""
            smb = SmbLogin(username, "" if domain == "." else domain, password)
        else:
            key_file = None
            if "key_file" in node.items:
                key_file = Path(_scalar(node.items["key_file"], f"{path}: ssh.key_file"))
                if not key_file.is_file():
                    raise BadInput(f"{path}: ssh.key_file {key_file} is not a file")
            if not password and key_file is None:
                raise BadInput(f"{path}: ssh needs key_file or a password")
            port_text = _scalar(node.items["port"], f"{path}: ssh.port") \
                if "port" in node.items else "22"
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise BadInput(f"{path}: ssh.port {port_text!r} is not a TCP port")
            ssh = SshLogin(username, password, key_file, int(port_text))
    return Credentials(smb, ssh)
