"""The LDAP account module against a real Samba AD DC: every account operation read back from
the DC's own database (ldbsearch on sam.ldb) and with Kerberos (kinit), every refusal one line."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
from tests.domain.dc import DomainController

from reseal.domain import keytab, krbkeys
from reseal.domain.ldapacct import (
    UF_ACCOUNTDISABLE,
    AccountSession,
    ComputerSpec,
    DomainError,
    DomainUnreachable,
    Endpoint,
)
from reseal.domain.passwords import ALPHABET, machine_password


def unique_name(prefix: str = "T") -> str:
    return (prefix + secrets.token_hex(4)).upper()[:15]


def spec(name: str, dc: DomainController, **extra: object) -> ComputerSpec:
    return ComputerSpec(name, f"{name.lower()}.{dc.dns_name}", **extra)  # type: ignore[arg-type]


def test_domain_identity_matches_the_dc(domain_controller: DomainController,
                                        admin_session: AccountSession) -> None:
    info = admin_session.domain_info()
    domain = domain_controller.ldbsearch("(objectClass=domain)", "objectSid", "objectGUID")
    assert info.sid == domain[0]["objectSid"][0]
    assert info.guid == domain[0]["objectGUID"][0]
    assert info.netbios_name == domain_controller.netbios
    assert info.dns_name == domain_controller.dns_name
    assert info.realm == domain_controller.realm
    assert info.computers_dn == f"CN=Computers,{domain_controller.base_dn}"
    assert info.dc_dns_name.lower() == domain_controller.fqdn


def test_create_like_adcli_then_kinit_with_derived_keys(
        domain_controller: DomainController, admin_session: AccountSession,
        tmp_path: Path) -> None:
    name = unique_name()
    password = machine_password()
    started = time.monotonic()
    account = admin_session.create_computer(
        spec(name, domain_controller, os_name="Debian GNU/Linux", os_version="12"), password)
    assert time.monotonic() - started < 2
    record = domain_controller.computer(name)
    assert record is not None
    assert record["sAMAccountName"] == [name + "$"]
    assert int(record["userAccountControl"][0]) & 0x1000
    assert record["dNSHostName"] == [f"{name.lower()}.{domain_controller.dns_name}"]
    assert sorted(record["servicePrincipalName"]) == sorted(
        [f"host/{name}", f"host/{name.lower()}.reseal.test", f"RestrictedKrbHost/{name}",
         f"RestrictedKrbHost/{name.lower()}.reseal.test"])
    assert record["msDS-SupportedEncryptionTypes"] == ["24"]
    assert record["operatingSystem"] == ["Debian GNU/Linux"]
    assert record["operatingSystemVersion"] == ["12"]
    assert account.kvno == 1 and account.sid == record["objectSid"][0]
    # the password works for Kerberos with keys derived from it and the AD computer salt
    keys = krbkeys.derive_keys(password, krbkeys.computer_salt(domain_controller.realm, name),
                               [krbkeys.AES256, krbkeys.AES128])
    path = tmp_path / "krb5.keytab"
    path.write_bytes(keytab.serialize_keytab(keytab.machine_entries(
        domain_controller.realm, name, f"{name.lower()}.reseal.test", account.kvno or 0, keys)))
    result = domain_controller.kinit_keytab(path, f"{name}$@{domain_controller.realm}")
    assert result.returncode == 0, result.stderr
    admin_session.delete_computer(account.dn)


def test_reset_disable_delete(domain_controller: DomainController,
                              admin_session: AccountSession) -> None:
    name = unique_name()
    first = machine_password()
    account = admin_session.create_computer(spec(name, domain_controller), first)
    since = domain_controller.log_offset()
    second = machine_password()
    assert admin_session.reset_password(account.dn, second) == 2
    events = [e for e in domain_controller.password_events(since) if e["dn"] == account.dn]
    assert [e["action"] for e in events] == ["Reset"]
    assert domain_controller.kinit_password(f"{name}$", first).returncode != 0
    assert domain_controller.kinit_password(f"{name}$", second).returncode == 0

    admin_session.disable_computer(account.dn)
    record = domain_controller.computer(name)
    assert record is not None and int(record["userAccountControl"][0]) & UF_ACCOUNTDISABLE
    assert not admin_session.read_computer(account.dn).enabled
    admin_session.set_enabled(account.dn, True)
    assert admin_session.read_computer(account.dn).enabled

    admin_session.delete_computer(account.dn)
    assert domain_controller.computer(name) is None
    assert admin_session.find_computer(name) is None


def test_machine_changes_its_own_password(domain_controller: DomainController,
                                          admin_session: AccountSession) -> None:
    name = unique_name()
    one_time = machine_password()
    account = admin_session.create_computer(spec(name, domain_controller), one_time)
    since = domain_controller.log_offset()
    new = machine_password()
    with AccountSession.open(domain_controller.endpoint(), f"{name}$", one_time,
                             dns_name=domain_controller.dns_name) as machine:
        assert machine.change_password(account.dn, one_time, new) == 2
        # its own dNSHostName and SPNs (validated writes a computer may make)
        machine.update_computer(account.dn, dns_host_name=f"{name.lower()}.reseal.test",
                                spns=spec(name, domain_controller).spns())
        with pytest.raises(DomainError, match="insufficientAccessRights"):
            machine.reset_password(account.dn, machine_password())  # a reset is not its right
    events = [e for e in domain_controller.password_events(since) if e["dn"] == account.dn]
    assert events and events[0]["action"] == "Change" and events[0]["status"] == "Success"
    with pytest.raises(DomainError, match="invalid credentials"):
        AccountSession.open(domain_controller.endpoint(), f"{name}$", one_time)
    assert domain_controller.kinit_password(f"{name}$", new).returncode == 0
    admin_session.delete_computer(account.dn)


def test_refusals_are_one_line(domain_controller: DomainController,
                               admin_session: AccountSession) -> None:
    dc = domain_controller
    cases: list[tuple[Endpoint, str, str]] = [
        (dc.endpoint(), "wrong password", "invalid credentials"),
        (dc.endpoint(server_name="other.reseal.test"), dc.admin_password,
         "certificate does not name other.reseal.test"),
        (dc.endpoint(ca_file=None), dc.admin_password, "not signed by a trusted CA"),
        (dc.endpoint(port=389), dc.admin_password, "no TLS there"),
        (dc.endpoint(tls="plain"), dc.admin_password, "plain LDAP would send passwords"),
        (dc.endpoint(ca_file=Path("/nonexistent/ca.pem")), dc.admin_password,
         "CA certificate file not found"),
    ]
    for endpoint, password, expected in cases:
        with pytest.raises(DomainError) as info:
            AccountSession.open(endpoint, dc.admin_account, password)
        message = str(info.value)
        assert expected in message and "\n" not in message
        assert dc.admin_password not in message
    with pytest.raises(DomainUnreachable, match="connection refused|cannot open"):
        AccountSession.open(dc.endpoint(port=1), dc.admin_account, dc.admin_password)

    name = unique_name()
    account = admin_session.create_computer(spec(name, dc), machine_password())
    with pytest.raises(DomainError, match="already exists"):
        admin_session.create_computer(spec(name, dc), machine_password())
    other = unique_name()
    with pytest.raises(DomainError, match="dNSHostName or an SPN"):
        admin_session.create_computer(ComputerSpec(other, f"{name.lower()}.reseal.test"),
                                      machine_password())
    assert dc.computer(other) is None  # nothing half-made
    with pytest.raises(DomainError, match="does not exist; create the OU"):
        admin_session.create_computer(spec(other, dc), machine_password(),
                                      ou=f"OU=Missing,{dc.base_dn}")
    admin_session.delete_computer(account.dn)
    with pytest.raises(DomainError, match="letters, digits or hyphens"):
        ComputerSpec("NAME-LONGER-THAN-15", "x.reseal.test")


def test_delegated_user_needs_rights(domain_controller: DomainController,
                                     admin_session: AccountSession) -> None:
    dc = domain_controller
    user, password = unique_name("U").lower(), "User-Pass-" + secrets.token_hex(6)
    dc.add_user(user, password)
    with AccountSession.open(dc.endpoint(), f"{dc.netbios}\\{user}", password) as plain, \
            pytest.raises(DomainError, match="insufficientAccessRights.*delegate"):
        plain.create_computer(spec(unique_name(), dc), machine_password())
    ou = f"OU={unique_name('OU')},{dc.base_dn}"
    dc.add_ou(ou)
    dc.delegate_computer_create(ou, user)
    with AccountSession.open(dc.endpoint(), f"{dc.netbios}\\{user}", password) as delegated:
        account = delegated.create_computer(spec(unique_name(), dc), machine_password(), ou=ou)
        assert account.ou == ou
        delegated.disable_computer(account.dn)
        delegated.delete_computer(account.dn)


def test_starttls_works_like_ldaps(domain_controller: DomainController) -> None:
    with AccountSession.open(domain_controller.endpoint(tls="starttls"),
                             domain_controller.admin_account,
                             domain_controller.admin_password) as session:
        assert session.domain_info().netbios_name == domain_controller.netbios


def test_machine_passwords() -> None:
    passwords = {machine_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) == 120 and password.isascii()
        assert set(password) <= set(ALPHABET)
        assert not set(password) & set(" !'\"$`")


def test_ldap_failures_read_as_one_line() -> None:
    from reseal.domain.ldapacct import describe_ldap_failure

    cases = [
        ({"description": "unwillingToPerform", "message": "0000216D: SvcErr: DSID-031A1254"},
         "machine account quota"),
        ({"description": "insufficientAccessRights", "message": "acl: unable to get access"},
         "lacks the right"),
        ({"description": "constraintViolation", "message": "acl: spn validation failed"},
         "dNSHostName or an SPN"),
        ({"description": "constraintViolation", "message": "0000052D: password restriction"},
         "password policy"),
        ({"description": "strongerAuthRequired", "message": "BindSimple: Transport encryption"},
         "transport encryption"),
        ({"description": "busy", "message": "line one\nline two"}, "busy: line one line two"),
    ]
    for result, expected in cases:
        line = describe_ldap_failure(result, "create computer X$")
        assert expected in line and "\n" not in line and line.startswith("create computer X$: ")
