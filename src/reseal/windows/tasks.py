"""Task Scheduler 2.0 definitions: the XML files under `System32\\Tasks` and their TaskCache.

Each registered task is an XML file (UTF-16LE with a byte-order mark as Windows writes it, UTF-8
when imported from one) whose `Principals` name the account it runs as (`<UserId>` holds a SID
or `COMPUTER\\user`), whose `RegistrationInfo/Author` names its author, and whose
`SecurityDescriptor` is SDDL. SOFTWARE `Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache`
indexes them: `Tree\\<task path>` holds the task's `Id` (a GUID) and `Tasks\\{GUID}` holds,
among others, `Hash`: on Windows 7 and 8 a SHA-256 of the XML file, which the Task Scheduler
compares before running the task ("The task image is corrupt or has been tampered with"); on
Windows 10 the definition lives in the registry itself and `Hash` is no longer a hash of the
file. The rewrite therefore updates `Hash` only where it is the file's SHA-256.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass

from reseal.registry import Hive, Key

TASKS_DIR = "System32/Tasks"
TASK_CACHE = "Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache"


@dataclass(frozen=True)
class TaskText:
    """A task file decoded, with what it takes to write it back in the same encoding."""

    text: str
    encoding: str  # "utf-16-le" or "utf-8"
    bom: bytes

    def encode(self, text: str) -> bytes:
        return self.bom + text.encode(self.encoding, errors="surrogatepass")


def decode_task(data: bytes) -> TaskText | None:
    """A task XML file's text; None when it is not a text file reseal can rewrite safely."""
    if data.startswith(codecs.BOM_UTF16_LE):
        encoding, bom = "utf-16-le", codecs.BOM_UTF16_LE
    elif data.startswith(codecs.BOM_UTF8):
        encoding, bom = "utf-8", codecs.BOM_UTF8
    elif len(data) >= 2 and data[1:2] == b"\0" and data[0:1] != b"\0":
        encoding, bom = "utf-16-le", b""
    else:
        encoding, bom = "utf-8", b""
    body = data[len(bom):]
    if encoding == "utf-16-le" and len(body) % 2:
        return None
    try:
        text = body.decode(encoding, errors="strict")
    except UnicodeDecodeError:
        return None
    if "<Task" not in text and "<task" not in text:
        return None
    return TaskText(text, encoding, bom)


def account_prefix_pattern(computer_name: str) -> re.Pattern[str]:
    """`NAME\\` as the domain part of an account (`NAME\\user`), NAME as a whole word."""
    return re.compile(r"(?<![A-Za-z0-9_.$-])" + re.escape(computer_name) + r"(?=\\)", re.IGNORECASE)


def cache_entry_for(software: Hive, task_path: str) -> Key | None:
    """TaskCache\\Tasks\\{GUID} of the task at `task_path` (relative to System32\\Tasks)."""
    relative = task_path.strip("/").replace("/", "\\")
    tree = software.key(f"{TASK_CACHE}\\Tree\\{relative}")
    ident = tree.value("Id") if tree is not None else None
    if ident is None or not isinstance(ident.data, str):
        return None
    return software.key(f"{TASK_CACHE}\\Tasks\\{ident.data.strip()}")


def file_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
