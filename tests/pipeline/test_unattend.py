"""unattend.xml import: the carried subset, a warning per other setting, hostile XML refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from reseal.errors import BadInput
from reseal.pipeline.answerfile import load_answer_file
from reseal.pipeline.unattend import import_unattend

UNATTEND = """<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend"
          xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
  <settings pass="specialize">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64"
               publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <ComputerName>LAB-PC-01</ComputerName>
      <RegisteredOwner>Lab Admin</RegisteredOwner>
      <TimeZone>W. Europe Standard Time</TimeZone>
    </component>
    <component name="Microsoft-Windows-UnattendedJoin" processorArchitecture="amd64"
               publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <Identification>
        <Credentials>
          <Domain>CORP</Domain>
          <Username>joiner</Username>
          <Password>Secr3t-Do-Not-Leak</Password>
        </Credentials>
        <JoinDomain>corp.example.com</JoinDomain>
        <MachineObjectOU>OU=Lab,DC=corp,DC=example,DC=com</MachineObjectOU>
        <UnsecureJoin>false</UnsecureJoin>
      </Identification>
    </component>
    <component name="Microsoft-Windows-International-Core" processorArchitecture="amd64"
               publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <InputLocale>de-DE</InputLocale>
    </component>
  </settings>
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64"
               publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
      <RegisteredOrganization>Example Corp</RegisteredOrganization>
      <RegisteredOwner>Someone Else</RegisteredOwner>
      <UserAccounts>
        <AdministratorPassword><Value>AlsoSecret</Value><PlainText>true</PlainText>
        </AdministratorPassword>
      </UserAccounts>
    </component>
  </settings>
</unattend>
"""


def _write(tmp_path: Path, text: str, name: str = "unattend.xml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_carried_values_and_one_warning_per_other_setting(tmp_path: Path) -> None:
    result = import_unattend(_write(tmp_path, UNATTEND))
    assert result.computer_name == "LAB-PC-01"
    assert result.registered_owner == "Lab Admin"  # specialize wins over oobeSystem
    assert result.registered_organization == "Example Corp"
    assert result.join_domain == "corp.example.com"
    assert result.machine_object_ou == "OU=Lab,DC=corp,DC=example,DC=com"
    assert result.join_account == "CORP\\joiner"
    assert result.warnings == [
        "unattend.xml:9: specialize/Microsoft-Windows-Shell-Setup/TimeZone: not carried over",
        "unattend.xml:17: specialize/Microsoft-Windows-UnattendedJoin/Identification/"
        "Credentials/Password: not carried over: an answer file never stores a password; "
        "set domain.password_file or domain.password_env",
        "unattend.xml:21: specialize/Microsoft-Windows-UnattendedJoin/Identification/"
        "UnsecureJoin: not carried over",
        "unattend.xml:26: specialize/Microsoft-Windows-International-Core/InputLocale: "
        "not carried over",
        "unattend.xml:33: oobeSystem/Microsoft-Windows-Shell-Setup/RegisteredOwner: differs "
        "from specialize/Microsoft-Windows-Shell-Setup/RegisteredOwner; the specialize value "
        "is used",
        "unattend.xml:34: oobeSystem/Microsoft-Windows-Shell-Setup/UserAccounts: not carried over",
    ]
    assert not any("Secr3t" in w or "AlsoSecret" in w for w in result.warnings)


def test_answer_file_imports_unattend_under_its_own_values(tmp_path: Path) -> None:
    _write(tmp_path, UNATTEND)
    answer_path = tmp_path / "answer.yaml"
    answer_path.write_text("""
os: windows
unattend: unattend.xml
defaults:
  firstboot:
    registered_owner: From YAML
machines:
  - name: one
  - name: two
    hostname: LAB-PC-02
""")
    answer = load_answer_file(answer_path, operations=[])
    one, two = answer.plans
    assert one.request.hostname == "LAB-PC-01"
    assert two.request.hostname == "LAB-PC-02"
    assert one.domain is not None
    assert (one.domain.name, one.domain.ou, one.domain.account) == (
        "corp.example.com", "OU=Lab,DC=corp,DC=example,DC=com", "CORP\\joiner")
    assert one.domain.password is None
    assert one.firstboot is not None
    assert one.firstboot.registered_owner == "From YAML"
    assert one.firstboot.registered_organization == "Example Corp"
    assert len(answer.warnings) == 6


def test_external_entity_is_refused(tmp_path: Path) -> None:
    xxe = ('<?xml version="1.0"?>\n<!DOCTYPE unattend [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
           '<unattend><settings pass="specialize"><component name="Microsoft-Windows-Shell-Setup">'
           '<ComputerName>&x;</ComputerName></component></settings></unattend>\n')
    with pytest.raises(BadInput, match=r"^unattend.xml:2: refused: declares a DOCTYPE"):
        import_unattend(_write(tmp_path, xxe))


def test_entity_expansion_bomb_is_refused(tmp_path: Path) -> None:
    entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    bomb = f'<?xml version="1.0"?>\n<!DOCTYPE unattend [{entities}]>\n<unattend>&i;</unattend>\n'
    with pytest.raises(BadInput, match="refused: declares a DOCTYPE"):
        import_unattend(_write(tmp_path, bomb))


def test_undeclared_entity_and_bad_xml(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"^unattend.xml:1: not well-formed XML: undefined entity"):
        import_unattend(_write(tmp_path, "<unattend>&nope;</unattend>"))
    with pytest.raises(BadInput, match=r"^unattend.xml:2: not well-formed XML"):
        import_unattend(_write(tmp_path, "<unattend>\n</unatend>"))
    with pytest.raises(BadInput, match=r"^unattend.xml:1: not an unattend file"):
        import_unattend(_write(tmp_path, "<html/>"))


def test_random_computer_name_is_not_carried(tmp_path: Path) -> None:
    text = UNATTEND.replace("<ComputerName>LAB-PC-01</ComputerName>",
                            "<ComputerName>*</ComputerName>")
    result = import_unattend(_write(tmp_path, text))
    assert result.computer_name is None
    assert any("ComputerName: '*' (a random name) is not carried over" in w
               for w in result.warnings)


def test_unattend_error_is_reported_at_the_answer_file_key(tmp_path: Path) -> None:
    _write(tmp_path, "<unattend><oops></unattend>")
    answer_path = tmp_path / "answer.yaml"
    answer_path.write_text("unattend: unattend.xml\ncount: 1\n")
    with pytest.raises(BadInput) as caught:
        load_answer_file(answer_path, operations=[], display="answer.yaml")
    assert str(caught.value).splitlines()[0] == (
        "answer.yaml:1:11: unattend: unattend.xml:1: not well-formed XML: mismatched tag")
