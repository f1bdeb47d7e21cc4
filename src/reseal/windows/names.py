"""Computer names: the NetBIOS rules Windows enforces, and generated names."""

from __future__ import annotations

import random
import string

from reseal.errors import BadInput

MAX_COMPUTER_NAME = 15
_ALLOWED = set(string.ascii_letters + string.digits + "-")


def validate_computer_name(name: str) -> str:
    """Return `name` when it is a valid computer name; otherwise BadInput naming the rule broken."""
    if not name:
        raise BadInput("--hostname: a computer name needs 1 to 15 characters; it is empty")
    if len(name) > MAX_COMPUTER_NAME:
        raise BadInput(
            f"--hostname {name!r}: {len(name)} characters; a Windows computer name has at most "
            f"{MAX_COMPUTER_NAME}"
        )
    bad = sorted({c for c in name if c not in _ALLOWED})
    if bad:
        raise BadInput(
            f"--hostname {name!r}: {''.join(bad)!r} not allowed; use only A-Z, a-z, 0-9 and '-'"
        )
    if name.isdigit():
        raise BadInput(f"--hostname {name!r}: a computer name cannot be all digits")
    if name.startswith("-") or name.endswith("-"):
        raise BadInput(f"--hostname {name!r}: a computer name cannot start or end with '-'")
    return name


def random_computer_name(rng: random.Random) -> str:
    """WIN- and 11 letters/digits, as Windows names a fresh installation."""
    alphabet = string.ascii_uppercase + string.digits
    return "WIN-" + "".join(rng.choice(alphabet) for _ in range(11))
