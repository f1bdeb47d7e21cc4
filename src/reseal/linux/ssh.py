"""OpenSSH public key lines: the SHA256 fingerprint `ssh-keygen -l` prints."""

from __future__ import annotations

import base64
import hashlib


def ssh_fingerprint(public_key_line: str) -> tuple[str, str] | None:
    """(key type, "SHA256:<base64 of sha256 of the key blob, unpadded>") of a .pub line,
    or None when the line is not a public key."""
    fields = public_key_line.split()
    if len(fields) < 2:
        return None
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except ValueError:
        return None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return fields[0], f"SHA256:{digest}"
