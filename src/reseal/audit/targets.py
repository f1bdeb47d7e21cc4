"""The addresses an audit may probe: exactly those given, never more.

Accepted forms, alone or comma-separated: `10.1.2.3`, `10.1.2.0/24` (network and broadcast
addresses left out, as a host never has them), `10.1.2.10-10.1.2.40`, `10.1.2.10-40`, and
`@FILE` (one form per line, `#` comments). IPv4 only: ARP, NBNS and the neighbour table are
IPv4 things, and an IPv6 range is too large to sweep. A set larger than MAX_ADDRESSES is
refused rather than scanned for hours.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

from reseal.errors import BadInput

MAX_ADDRESSES = 65536
MAX_FILE_BYTES = 4 << 20

Address = ipaddress.IPv4Address


def _bad(spec: str, where: str, why: str) -> BadInput:
    return BadInput(f"{where}: {spec!r} {why}; give addresses as 10.0.0.5, 10.0.0.0/24, "
                    "10.0.0.10-40 or @FILE")


def _expand_one(spec: str, where: str) -> list[Address]:
    if "/" in spec:
        try:
            network = ipaddress.IPv4Network(spec, strict=False)
        except ValueError as exc:
            raise _bad(spec, where, f"is not an IPv4 network ({exc})") from None
        if network.num_addresses > MAX_ADDRESSES:
            raise _bad(spec, where, f"has {network.num_addresses} addresses, more than "
                                    f"{MAX_ADDRESSES}")
        return list(network.hosts()) if network.prefixlen < 31 else list(network)
    if "-" in spec:
        first_text, _, last_text = spec.partition("-")
        try:
            first = Address(first_text.strip())
        except ValueError:
            raise _bad(spec, where, "does not start with an IPv4 address") from None
        last_text = last_text.strip()
        try:
            if last_text.isdigit():
                last = Address((int(first) & 0xFFFFFF00) | int(last_text))
                if int(last_text) > 255:
                    raise ValueError
            else:
                last = Address(last_text)
        except ValueError:
            raise _bad(spec, where, "does not end with an address or a last octet") from None
        if last < first:
            raise _bad(spec, where, "ends before it starts")
        if int(last) - int(first) + 1 > MAX_ADDRESSES:
            raise _bad(spec, where, f"holds more than {MAX_ADDRESSES} addresses")
        return [Address(n) for n in range(int(first), int(last) + 1)]
    try:
        return [Address(spec)]
    except ValueError:
        if ":" in spec:
            raise _bad(spec, where, "is IPv6; the LAN audit works on IPv4") from None
        raise _bad(spec, where, "is not an IPv4 address (host names are not resolved)") from None


def read_bounded(path: Path, limit: int, where: str, what: str) -> bytes:
    """A small input file (target list, password file); refused above `limit` bytes."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise BadInput(f"{where}: cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise BadInput(f"{where}: the {what} {path} is larger than {limit} bytes")
    return data


def _read_file(path_text: str, where: str) -> list[str]:
    data = read_bounded(Path(path_text), MAX_FILE_BYTES, where, "target file")
    words: list[str] = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0]
        words.extend(w for w in line.replace(",", " ").split() if w)
    return words


def expand(specs: Iterable[str], where: str = "targets") -> list[Address]:
    """Every address named by `specs`, in order, without repeats."""
    seen: dict[Address, None] = {}
    for raw in specs:
        for word in raw.split(","):
            word = word.strip()
            if not word:
                continue
            if word.startswith("@"):
                for inner in _read_file(word[1:], where):
                    if inner.startswith("@"):
                        raise _bad(inner, word, "is a file inside a file")
                    for address in _expand_one(inner, word[1:]):
                        seen.setdefault(address, None)
            else:
                for address in _expand_one(word, where):
                    seen.setdefault(address, None)
            if len(seen) > MAX_ADDRESSES:
                raise BadInput(f"{where}: more than {MAX_ADDRESSES} addresses; audit the LAN "
                               "in parts")
    return list(seen)


def select(targets: Iterable[str], excludes: Iterable[str]) -> list[Address]:
    """The targets less the excluded addresses; refuses an empty result."""
    chosen = expand(targets)
    dropped = set(expand(excludes, "--exclude"))
    result = [a for a in chosen if a not in dropped]
    if not result:
        raise BadInput("no address left to audit: the targets are empty or all excluded")
    return result
