"""Computer-name rules: each broken rule is named in the refusal."""

from __future__ import annotations

import random

import pytest

from reseal.errors import BadInput
from reseal.operations.base import IdentityRequest
from reseal.operations.windows_computer_name import validate
from reseal.windows.names import random_computer_name, validate_computer_name


@pytest.mark.parametrize("name", ["A", "WIN-0123456789A", "build-7", "x1", "Clone-042"])
def test_valid_names(name: str) -> None:
    assert validate_computer_name(name) == name
    validate(IdentityRequest(hostname=name), None)


@pytest.mark.parametrize("name,rule", [
    ("", "empty"),
    ("ABCDEFGHIJKLMNOP", "at most 15"),
    ("bad_name", "'_' not allowed"),
    ("dot.name", "'.' not allowed"),
    ("sp ace", "' ' not allowed"),
    ("ümlaut", "'ü' not allowed"),
    ("1234567", "all digits"),
    ("-lead", "start or end"),
    ("trail-", "start or end"),
])
def test_invalid_names_name_the_rule(name: str, rule: str) -> None:
    with pytest.raises(BadInput, match=rule):
        validate(IdentityRequest(hostname=name), None)


def test_random_names_are_valid() -> None:
    rng = random.Random(3)
    for _ in range(50):
        validate_computer_name(random_computer_name(rng))
