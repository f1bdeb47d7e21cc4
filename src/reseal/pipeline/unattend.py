"""Import the part of a Windows unattend.xml that reseal can carry over.

Carried: Microsoft-Windows-Shell-Setup `ComputerName`, `RegisteredOwner`,
`RegisteredOrganization`; Microsoft-Windows-UnattendedJoin `Identification/JoinDomain`,
`Identification/MachineObjectOU` and the join account name. Everything else gives one warning
per setting, naming where it is, never its value (unattend files often hold passwords).

The XML is parsed with expat directly and refused if it declares a DOCTYPE: that rules out
external entities and entity expansion bombs, which unattend files never need.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from reseal.errors import BadInput
from reseal.pipeline.plan import DomainSettings, FirstBootSettings
from reseal.pipeline.yamlsafe import read_limited

MAX_UNATTEND_BYTES = 1 << 20
MAX_ELEMENTS = 50_000
MAX_DEPTH = 64
SHELL_SETUP = "Microsoft-Windows-Shell-Setup"
UNATTENDED_JOIN = "Microsoft-Windows-UnattendedJoin"
SHELL_CARRIED = ("ComputerName", "RegisteredOwner", "RegisteredOrganization")
PASS_ORDER = ("specialize", "oobeSystem", "auditSystem", "auditUser", "generalize",
              "offlineServicing", "windowsPE")


@dataclass
class XmlElement:
    """A parsed element: local name (namespace dropped), attributes, text, line."""

    name: str
    attrs: dict[str, str]
    line: int
    children: list[XmlElement] = field(default_factory=list)
    text: str = ""

    def child(self, name: str) -> XmlElement | None:
        for element in self.children:
            if element.name == name:
                return element
        return None


class _Refuse(Exception):
    pass


def parse_xml_safely(data: bytes, name: str) -> XmlElement:
    """Parse XML without DTDs or entities; raises BadInput with `name:line: ...`."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[XmlElement] = []
    roots: list[XmlElement] = []
    count = 0

    def local(tag: str) -> str:
        return tag.rsplit(" ", 1)[-1]

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > MAX_ELEMENTS or len(stack) >= MAX_DEPTH:
            raise _Refuse(f"more than {MAX_ELEMENTS} elements or {MAX_DEPTH} levels")
        element = XmlElement(local(tag), {local(k): v for k, v in attrs.items()},
                             parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    def refuse_doctype(*_: object) -> None:
        raise _Refuse("declares a DOCTYPE (entities are refused: unattend files never need them)")

    def refuse_entity(*_: object) -> int:
        raise _Refuse("declares or references an external entity")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_entity
    try:
        parser.Parse(data, True)
    except _Refuse as exc:
        raise BadInput(f"{name}:{parser.CurrentLineNumber}: refused: {exc}") from None
    except expat.ExpatError as exc:
        raise BadInput(f"{name}:{exc.lineno}: not well-formed XML: "
                       f"{expat.ErrorString(exc.code)}") from None
    except (LookupError, ValueError) as exc:
        # <?xml encoding="..."?> names a codec Python does not know (LookupError) or one expat
        # cannot decode, such as UTF-7 (ValueError: multi-byte encodings are not supported)
        raise BadInput(f"{name}:1: refused: {exc}; save it as UTF-8") from None
    if not roots:
        raise BadInput(f"{name}: no XML element")
    return roots[0]


@dataclass
class UnattendImport:
    """What an unattend.xml contributes to an answer file's defaults."""

    path: Path
    computer_name: str | None = None
    registered_owner: str | None = None
    registered_organization: str | None = None
    join_domain: str | None = None
    machine_object_ou: str | None = None
    join_account: str | None = None
    warnings: list[str] = field(default_factory=list)

    def merge_under(self, domain: DomainSettings | None, firstboot: FirstBootSettings | None
                    ) -> tuple[DomainSettings | None, FirstBootSettings | None]:
        """Fill what the answer file left unset; the answer file's own values win."""
        if self.join_domain and domain is None:
            domain = DomainSettings(self.join_domain, self.machine_object_ou, self.join_account)
        elif domain is not None and domain.name.lower() == (self.join_domain or "").lower():
            domain = dataclasses.replace(domain, ou=domain.ou or self.machine_object_ou,
                                         account=domain.account or self.join_account)
        if self.registered_owner or self.registered_organization:
            base = firstboot or FirstBootSettings()
            firstboot = dataclasses.replace(
                base,
                registered_owner=base.registered_owner or self.registered_owner,
                registered_organization=(base.registered_organization
                                         or self.registered_organization),
            )
        return domain, firstboot


def import_unattend(path: Path) -> UnattendImport:
    """Read `path` and keep the settings reseal carries over; warn about every other one."""
    name = path.name
    data = read_limited(path, MAX_UNATTEND_BYTES, what="unattend file")
    root = parse_xml_safely(data, name)
    if root.name != "unattend":
        raise BadInput(f"{name}:{root.line}: not an unattend file (root element <{root.name}>, "
                       "expected <unattend>)")
    result = UnattendImport(path)
    carried: dict[str, tuple[str, str]] = {}  # field -> (value, where)
    settings = sorted(
        (e for e in root.children if e.name == "settings"),
        key=lambda e: _pass_rank(e.attrs.get("pass", "")),
    )
    for element in root.children:
        if element.name != "settings":
            result.warnings.append(f"{name}:{element.line}: {element.name}: not carried over")
    for block in settings:
        pass_name = block.attrs.get("pass", "?")
        for component in block.children:
            component_name = component.attrs.get("name", component.name)
            where = f"{pass_name}/{component_name}"
            if component.name != "component":
                result.warnings.append(f"{name}:{component.line}: {where}: not carried over")
            elif component_name == SHELL_SETUP:
                _shell_setup(component, where, name, carried, result.warnings)
            elif component_name == UNATTENDED_JOIN:
                _unattended_join(component, where, name, carried, result.warnings)
            else:
                for setting in component.children:
                    result.warnings.append(
                        f"{name}:{setting.line}: {where}/{setting.name}: not carried over")
    for key, (value, _where) in carried.items():
        setattr(result, key, value)
    return result


def _pass_rank(pass_name: str) -> int:
    return PASS_ORDER.index(pass_name) if pass_name in PASS_ORDER else len(PASS_ORDER)


def _carry(carried: dict[str, tuple[str, str]], key: str, element: XmlElement, where: str,
           name: str, warnings: list[str]) -> None:
    value = element.text.strip()
    if not value:
        warnings.append(f"{name}:{element.line}: {where}: empty, not carried over")
        return
    if key in carried:
        if carried[key][0] != value:
            warnings.append(f"{name}:{element.line}: {where}: differs from {carried[key][1]}; "
                            f"the {carried[key][1].split('/')[0]} value is used")
        return
    carried[key] = (value, where)


def _shell_setup(component: XmlElement, where: str, name: str,
                 carried: dict[str, tuple[str, str]], warnings: list[str]) -> None:
    keys = {"ComputerName": "computer_name", "RegisteredOwner": "registered_owner",
            "RegisteredOrganization": "registered_organization"}
    for setting in component.children:
        path = f"{where}/{setting.name}"
        if setting.name == "ComputerName" and setting.text.strip() == "*":
            warnings.append(f"{name}:{setting.line}: {path}: '*' (a random name) is not carried "
                            "over; set defaults.hostname instead")
        elif setting.name in keys:
            _carry(carried, keys[setting.name], setting, path, name, warnings)
        else:
            warnings.append(f"{name}:{setting.line}: {path}: not carried over")


def _unattended_join(component: XmlElement, where: str, name: str,
                     carried: dict[str, tuple[str, str]], warnings: list[str]) -> None:
    for setting in component.children:
        path = f"{where}/{setting.name}"
        if setting.name != "Identification":
            warnings.append(f"{name}:{setting.line}: {path}: not carried over")
            continue
        for item in setting.children:
            item_path = f"{path}/{item.name}"
            if item.name == "JoinDomain":
                _carry(carried, "join_domain", item, item_path, name, warnings)
            elif item.name == "MachineObjectOU":
                _carry(carried, "machine_object_ou", item, item_path, name, warnings)
            elif item.name == "Credentials":
                _credentials(item, item_path, name, carried, warnings)
            else:
                warnings.append(f"{name}:{item.line}: {item_path}: not carried over")


def _credentials(element: XmlElement, where: str, name: str,
                 carried: dict[str, tuple[str, str]], warnings: list[str]) -> None:
    domain = element.child("Domain")
    user = element.child("Username")
    if user is not None and user.text.strip():
        account = user.text.strip()
        if domain is not None and domain.text.strip() and "\\" not in account and "@" not in account:
            account = f"{domain.text.strip()}\\{account}"
        carried.setdefault("join_account", (account, f"{where}/Username"))
    for item in element.children:
        if item.name == "Password":
            warnings.append(f"{name}:{item.line}: {where}/Password: not carried over: an answer "
                            "file never stores a password; set domain.password_file or "
                            "domain.password_env")
        elif item.name not in ("Domain", "Username"):
            warnings.append(f"{name}:{item.line}: {where}/{item.name}: not carried over")
