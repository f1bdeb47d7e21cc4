"""The imaging host's half of a join, the same for Linux and Windows clones.

    plan = open_join(domain_settings, ComputerSpec(name, fqdn, ...), master_names={"MASTER"})
    ...  # every refusal has happened now: write nothing to the image before this
    account, created = make_account(plan, machine_password())   # create, or reset a reused one
    ...  # write the secret into the image (keytab, hook, LSA secret)
    # on failure: discard_account(plan, account, created) deletes what make_account created
    plan.session.close()

`open_join` binds with the join account (TLS, certificate checked), checks that the DC serves
the named domain, that the OU exists, that the clone's name is not the master's and that no
account of that name exists (unless `reuse_existing`): each refusal is one `BadInput` line,
and nothing has been written anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reseal.domain.ldapacct import (
    AccountSession,
    ComputerAccount,
    ComputerSpec,
    DomainError,
    DomainInfo,
    check_computer_name,
)
from reseal.domain.settings import DomainSettings
from reseal.errors import BadInput, ResealError


@dataclass
class JoinPlan:
    domain: DomainSettings
    spec: ComputerSpec
    session: AccountSession
    info: DomainInfo
    existing: ComputerAccount | None  # reused (reuse_existing) or None: a new account

    @property
    def container(self) -> str:
        return self.domain.ou or self.info.computers_dn

    @property
    def principal(self) -> str:
        return f"{self.spec.sam_account_name}@{self.info.realm}"


def check_request(domain: DomainSettings, name: str, problems: list[str], rename_hint: str
                  ) -> None:
    """The refusals a join makes before the target is even opened: settings `problems`, a
    computer name that cannot be an account, a join password that cannot be read."""
    if problems:
        raise BadInput(f"domain {domain.name}: {'; '.join(problems)}")
    try:
        check_computer_name(name)
    except DomainError as exc:
        raise BadInput(f"domain join: {exc}; {rename_hint}") from None
    assert domain.password is not None
    domain.password.read()  # readable now, or one clear line before anything is opened


@contextlib.contextmanager
def account_for(plan: JoinPlan, password: str,
                record: Callable[[str, str, str | None, str | None], None],
                warn: Callable[[str], None]) -> Iterator[ComputerAccount]:
    """`make_account`, recorded; if the body (writing the secret into the image) fails, the
    account made is deleted again (`discard_account`) and the failure goes on."""
    account, created = make_account(plan, password)
    record(f"domain:{plan.info.realm}", "create" if created else "reset",
           None if created else account.dn,
           f"{account.dn} (kvno {account.kvno})" + ("" if created else ", existing account reused"))
    try:
        yield account
    except BaseException:
        warning = discard_account(plan, account, created)
        if warning:
            warn(warning)
        raise


def open_join(domain: DomainSettings, spec: ComputerSpec,
              master_names: set[str] | frozenset[str] = frozenset()) -> JoinPlan:
    if spec.name.upper() in {n.upper() for n in master_names}:
        raise BadInput(f"domain join: the clone would be named {spec.name.upper()}, the "
                       "master's own computer account; give the clone a host name of its own "
                       "(reseal never touches the master's account)")
    if domain.account is None or domain.password is None:
        raise BadInput(f"domain {domain.name}: the join needs account and password_file or "
                       "password_env")
    session = AccountSession.open(domain.endpoint(), domain.account, domain.password.read(),
                                  domain.name)
    try:
        info = session.domain_info()
        if info.dns_name.lower() != domain.name.lower():
            raise BadInput(f"domain join: {domain.controller_name} serves {info.dns_name}, not "
                           f"{domain.name}; correct domain.name or domain.controller")
        if domain.ou is not None and not session.container_exists(domain.ou):
            raise BadInput(f"domain join: {domain.ou} does not exist in {info.dns_name}; "
                           "create the OU or correct domain.ou")
        existing = session.find_computer(spec.name)
        if existing is not None and not domain.reuse_existing:
            raise BadInput(f"domain join: a computer account {spec.sam_account_name} already "
                           f"exists ({existing.dn}); give the clone another name, delete the "
                           "stale account (reseal domain delete), or set "
                           "domain.reuse_existing: true")
    except BaseException:
        session.close()
        raise
    return JoinPlan(domain, spec, session, info, existing)


def make_account(plan: JoinPlan, password: str) -> tuple[ComputerAccount, bool]:
    """The clone's account with `password`: created (one LDAP add), or, when reused, reset
    and brought to the spec's attributes and enabled. Returns (account, created)."""
    session, spec = plan.session, plan.spec
    if plan.existing is None:
        return session.create_computer(spec, password, plan.domain.ou), True
    dn = plan.existing.dn
    session.reset_password(dn, password)
    session.update_computer(dn, dns_host_name=spec.dns_host_name, spns=spec.spns(),
                            enctypes=spec.enctypes, os_name=spec.os_name,
                            os_version=spec.os_version)
    session.set_enabled(dn, True)
    return session.read_computer(dn), False


def discard_account(plan: JoinPlan, account: ComputerAccount, created: bool) -> str | None:
    """Undo `make_account` after a later failure: delete an account it created (a reused one
    is left as it is). Returns a warning when the delete itself failed."""
    if not created:
        return None
    try:
        plan.session.delete_computer(account.dn)
    except ResealError as exc:
        return f"could not delete {account.dn} after the failure: {exc}"
    return None
