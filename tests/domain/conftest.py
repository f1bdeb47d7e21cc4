"""Domain test fixtures: one throwaway Samba AD DC per test session (per xdist worker).

Other areas reuse it: `from tests.domain.conftest import domain_controller` in their own
conftest (the fixture is found by name), or `tests.domain.dc.start_domain_controller` directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.domain.dc import DomainController, missing_tools, start_domain_controller


@pytest.fixture(scope="session")
def domain_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DomainController]:
    if os.geteuid() != 0:
        pytest.skip("a Samba AD DC needs root (mount namespace, ports below 1024)")
    missing = missing_tools()
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (see scripts/apt-packages.txt)")
    workdir: Path = tmp_path_factory.mktemp("samba-dc")
    with start_domain_controller(workdir) as dc:
        yield dc


@pytest.fixture
def admin_session(domain_controller: DomainController) -> Iterator[object]:
    """An LDAPS session bound as the domain administrator."""
    from reseal.domain.ldapacct import AccountSession

    with AccountSession.open(domain_controller.endpoint(), domain_controller.admin_account,
                             domain_controller.admin_password) as session:
        yield session
