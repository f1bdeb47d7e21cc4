"""`reseal domain ...`: computer accounts on a domain controller, and the `--join-domain` flags
of `reseal generalize` (the same settings as the answer file's `domain:` section).

    reseal domain info   --domain D --account A --password-env V [--controller DC ...]
    reseal domain show   NAME [connection flags]
    reseal domain delete NAME [connection flags]
    reseal domain disable NAME [connection flags]

Passwords come from --password-file or --password-env only, never from the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reseal.domain.settings import (
    DOMAIN_MODES,
    ENCTYPE_CHOICES,
    TLS_MODES,
    DomainSettings,
    PasswordRef,
)
from reseal.errors import BadInput
from reseal.formatting import print_json


def add_connection_arguments(parser: argparse.ArgumentParser, prefix: str) -> None:
    """Flags mirroring the answer file's domain keys (`prefix` is "--domain-" or "--")."""
    parser.add_argument(f"{prefix}account", dest="domain_account",
                        help="join account, DOMAIN\\user or user@domain")
    parser.add_argument(f"{prefix}password-file", dest="domain_password_file", type=Path,
                        help="file whose first line is the join password")
    parser.add_argument(f"{prefix}password-env", dest="domain_password_env", metavar="VAR",
                        help="environment variable holding the join password")
    parser.add_argument(f"{prefix}controller", dest="domain_controller", metavar="DNS-NAME",
                        help="the DC's DNS name (its certificate must name it; default: the "
                             "domain name)")
    parser.add_argument(f"{prefix}address", dest="domain_address",
                        help="where this host reaches the DC (default: the controller name)")
    parser.add_argument(f"{prefix}ca-file", dest="domain_ca_file", type=Path,
                        help="CA certificate that signed the DC's certificate")
    parser.add_argument(f"{prefix}tls", dest="domain_tls", choices=TLS_MODES, default="ldaps")
    parser.add_argument(f"{prefix}port", dest="domain_port", type=int)


def add_join_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("domain join (the answer file's domain: section)")
    group.add_argument("--join-domain", metavar="DNS-NAME", help="join the clone to this AD domain")
    group.add_argument("--domain-ou", metavar="DN", help="container for the computer account")
    group.add_argument("--domain-mode", choices=DOMAIN_MODES, default=None,
                       help="firstboot (default): pre-stage + join on first boot; offline: "
                            "join now and write the keytab")
    group.add_argument("--domain-firstboot-address", metavar="ADDRESS",
                       help="where the clone reaches the DC at first boot")
    group.add_argument("--domain-reuse-existing", action="store_true",
                       help="take over an existing account of the clone's name")
    group.add_argument("--domain-enctypes", choices=tuple(ENCTYPE_CHOICES), default=None)
    add_connection_arguments(group, "--domain-")  # type: ignore[arg-type]


def _password(args: argparse.Namespace) -> PasswordRef | None:
    if args.domain_password_file is not None and args.domain_password_env is not None:
        raise BadInput("give --domain-password-file or --domain-password-env, not both")
    if args.domain_password_file is not None:
        return PasswordRef(file=args.domain_password_file.resolve())
    if args.domain_password_env is not None:
        return PasswordRef(env=args.domain_password_env)
    return None


def domain_from_args(args: argparse.Namespace,
                     base: DomainSettings | None) -> DomainSettings | None:
    """The answer file's domain settings overridden by the --join-domain/--domain-* flags."""
    name = getattr(args, "join_domain", None)
    settings = base
    if name is not None and (base is None or base.name.lower() != name.lower()):
        settings = DomainSettings(name=name)
    return _override(args, settings) if _has_overrides(args) else settings


def _has_overrides(args: argparse.Namespace) -> bool:
    return any(getattr(args, key, None) not in (None, False, "ldaps") for key in (
        "domain_ou", "domain_mode", "domain_firstboot_address", "domain_reuse_existing",
        "domain_enctypes", "domain_account", "domain_password_file", "domain_password_env",
        "domain_controller", "domain_address", "domain_ca_file", "domain_tls", "domain_port"))


def _override(args: argparse.Namespace, settings: DomainSettings | None) -> DomainSettings:
    if settings is None:
        raise BadInput("--domain-* flags need --join-domain DNS-NAME (or a domain: section)")
    import dataclasses

    changes: dict[str, object] = {}
    for flag, key in (("domain_ou", "ou"), ("domain_mode", "mode"),
                      ("domain_firstboot_address", "firstboot_address"),
                      ("domain_enctypes", "enctypes"), ("domain_account", "account"),
                      ("domain_controller", "controller"), ("domain_address", "address"),
                      ("domain_port", "port")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[key] = value
    if getattr(args, "domain_tls", "ldaps") != "ldaps":
        changes["tls"] = args.domain_tls
    if getattr(args, "domain_ca_file", None) is not None:
        changes["ca_file"] = args.domain_ca_file.resolve()
    if getattr(args, "domain_reuse_existing", False):
        changes["reuse_existing"] = True
    password = _password(args)
    if password is not None:
        changes["password"] = password
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


# --- reseal domain ----------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("domain", help="computer accounts on an AD domain controller")
    actions = parser.add_subparsers(dest="domain_action", metavar="ACTION")
    for action, text in (("info", "the domain's names, SID and GUID"),
                         ("show", "a computer account"),
                         ("disable", "disable a computer account"),
                         ("delete", "delete a computer account")):
        child = actions.add_parser(action, help=text)
        if action != "info":
            child.add_argument("name", help="computer name (NetBIOS, without $)")
        child.add_argument("--domain", required=True, metavar="DNS-NAME")
        add_connection_arguments(child, "--")
        child.add_argument("--json", action="store_true")
        child.set_defaults(handler=run)
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)


def run(args: argparse.Namespace) -> int:
    from reseal.domain.ldapacct import AccountSession

    settings = _override(args, DomainSettings(name=args.domain))
    if settings.account is None or settings.password is None:
        raise BadInput("reseal domain: give --account and --password-file or --password-env")
    with AccountSession.open(settings.endpoint(), settings.account, settings.password.read(),
                             settings.name) as session:
        if args.domain_action == "info":
            info = session.domain_info()
            if args.json:
                print_json(info)
            else:
                for key, value in vars(info).items():
                    print(f"{key:14} {value}")
            return 0
        account = session.find_computer(args.name)
        if account is None:
            raise BadInput(f"reseal domain: no computer account {args.name.upper()}$ in "
                           f"{settings.name}")
        if args.domain_action == "disable":
            session.disable_computer(account.dn)
            account = session.read_computer(account.dn)
        elif args.domain_action == "delete":
            session.delete_computer(account.dn)
            print(f"deleted {account.dn}")
            return 0
        if args.json:
            print_json(account)
        else:
            for key, value in vars(account).items():
                print(f"{key:22} {value}")
            print(f"{'enabled':22} {account.enabled}")
    return 0
