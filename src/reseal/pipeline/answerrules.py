"""Rules for identity values in answer files: host names, SIDs, machine-ids, MACs, OUs.

Kept apart from the reader so that the CLI and the batch runner check a value the same way
the answer file does.
"""

from __future__ import annotations

import re
import string

from reseal.pipeline.answerfields import ErrorSink
from reseal.pipeline.yamlsafe import Mark

SID_PATTERN = re.compile(r"S-1-5-21-(\d{1,10})-(\d{1,10})-(\d{1,10})")
MACHINE_ID = re.compile(r"[0-9a-f]{32}")
MAC_ADDRESS = re.compile(r"([0-9A-Fa-f]{2})([:-]?)([0-9A-Fa-f]{2})(?:\2[0-9A-Fa-f]{2}){4}")
LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DN_PART = re.compile(r"\s*(OU|CN|DC|O|L|ST|C)=([^,=]|\\,)+\s*", re.IGNORECASE)
DNS_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
COUNTER_SPEC = re.compile(r"0?[1-9]?d?")
MAX_SEED = 2**64 - 1
SEED_TEXT = re.compile(r"[0-9]{1,20}")


def parse_seed(text: str) -> int:
    """A seed given as text (command line, CSV): 0 to 2**64-1, digits only. Raises
    ValueError with the reason (never converts thousands of digits)."""
    text = text.strip()
    if not SEED_TEXT.fullmatch(text) or int(text) > MAX_SEED:
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
        raise ValueError(f"{shown!r} is not a seed: a whole number from 0 to {MAX_SEED}")
    return int(text)


def hostname_problem(name: str, os_name: str | None) -> str | None:
    """Why `name` cannot be a computer name on `os_name` (None: unknown, RFC 1123), or None."""
    if os_name == "windows":
        if not 1 <= len(name) <= 15:
            return f"is {len(name)} characters; a Windows computer name is 1-15 (NetBIOS)"
        if not LABEL.fullmatch(name):
            return ("is not a Windows computer name: letters, digits and hyphens only, "
                    "not starting or ending with a hyphen")
        if name.isdigit():
            return "is only digits; a Windows computer name needs a letter or hyphen"
        return None
    limit = 64 if os_name == "linux" else 253
    if len(name) > limit:
        return f"is {len(name)} characters; a hostname is at most {limit}"
    for label in name.split("."):
        if not 1 <= len(label) <= 63 or not LABEL.fullmatch(label):
            return ("breaks RFC 1123: each dot-separated label is 1-63 letters, digits or "
                    "hyphens, not starting or ending with a hyphen")
    return None


def check_pattern(pattern: str, mark: Mark, path: str, sink: ErrorSink) -> bool:
    """A hostname pattern may only use {n} with an optional width, like {n:03}."""
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        sink.add(mark, path, f"bad hostname pattern: {exc} (write the counter as {{n}} or {{n:03}})")
        return False
    for _literal, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name != "n" or conversion is not None or not COUNTER_SPEC.fullmatch(spec or ""):
            shown = "{" + field_name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            sink.add(mark, path, f"bad hostname pattern {shown}: the only placeholder is the "
                     "counter, written {n} or {n:03}")
            return False
    return True


def render_pattern(pattern: str, n: int) -> str:
    return pattern.format(n=n)


def normal_identity(key: str, value: str) -> str:
    """A checked identity value in its one canonical spelling (for duplicate checks and use)."""
    if key == "machine_sid" and value != "random":
        return normal_sid(value)
    return value


def check_identity_value(key: str, value: str, mark: Mark, path: str, sink: ErrorSink) -> bool:
    if key == "machine_sid":
        match = SID_PATTERN.fullmatch(value)
        if value != "random" and (match is None or
                                  any(int(part) > 0xFFFFFFFF for part in match.groups())):
            sink.add(mark, path, f"{value!r} is not a machine SID: write S-1-5-21-A-B-C "
                     "(three numbers below 4294967296) or random")
            return False
    elif not MACHINE_ID.fullmatch(value) or value == "0" * 32:
        sink.add(mark, path, f"{value!r} is not a machine-id: 32 lowercase hex digits, "
                 "not all zero")
        return False
    return True


def check_ou(ou: str, mark: Mark, path: str, sink: ErrorSink) -> bool:
    parts = re.split(r"(?<!\\),", ou)
    if not all(DN_PART.fullmatch(part) for part in parts):
        sink.add(mark, path, f"{ou!r} is not a distinguished name like OU=Lab,DC=corp,DC=example")
        return False
    return True


def normal_mac(mac: str) -> str:
    """`52-54-00-AB-CD-EF` or `525400abcdef` as `52:54:00:ab:cd:ef`."""
    digits = re.sub(r"[:-]", "", mac).lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def mac_problem(mac: str) -> str | None:
    """Why a well-formed MAC cannot be one machine's address (None when it can): all zero,
    broadcast, or a group (multicast) address, whose first octet has its lowest bit set."""
    normal = normal_mac(mac)
    if normal == "00:00:00:00:00:00":
        return "is all zero, not a device's address"
    if normal == "ff:ff:ff:ff:ff:ff":
        return "is the broadcast address, not a device's address"
    if int(normal[:2], 16) & 1:
        return "is a multicast (group) address: the first octet's lowest bit is set"
    return None


def normal_sid(sid: str) -> str:
    """`S-1-5-21-01-02-03` as `S-1-5-21-1-2-3`: the form Windows writes, so two spellings of
    one SID are one SID. `sid` must match SID_PATTERN."""
    match = SID_PATTERN.fullmatch(sid)
    assert match is not None
    return "S-1-5-21-" + "-".join(str(int(part)) for part in match.groups())


CLUSTER_ADDRESS = re.compile(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})")


def cluster_address_problem(address: str) -> str | None:
    """Why `address` is not a Dask scheduler address like tcp://sched.lab:8786, or None."""
    match = CLUSTER_ADDRESS.fullmatch(address)
    if match is None:
        return (f"{address!r} is not a Dask scheduler address; write tcp://HOST:PORT "
                "(or tls://HOST:PORT), e.g. tcp://imaging-1.lab:8786")
    if not 1 <= int(match.group(3)) <= 65535:
        return f"{address!r}: port {match.group(3)} is not between 1 and 65535"
    return None
