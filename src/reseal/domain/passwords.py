"""Machine account passwords: 120 random ASCII characters, like adcli's.

ASCII keeps the UTF-16LE form AD stores (`unicodePwd`) and the UTF-8 form Kerberos salts
agree; adcli's alphabet (printable ASCII 32..122 without space and the shell-special
`!'"$` and backquote) keeps them safe to paste. Drawn with `secrets`. Python 3.8+.
"""

from __future__ import annotations

import secrets

MACHINE_PASSWORD_LENGTH = 120
_EXCLUDED = set(" !'\"$`")
ALPHABET = "".join(chr(c) for c in range(32, 123) if chr(c) not in _EXCLUDED)


def machine_password(length: int = MACHINE_PASSWORD_LENGTH) -> str:
    """A new random machine password (never logged, never printed)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def unicode_pwd(password: str) -> bytes:
    """The value AD's `unicodePwd` takes: the password in double quotes, UTF-16LE."""
    return f'"{password}"'.encode("utf-16-le")
