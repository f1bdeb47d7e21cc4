"""windows-machine-sid: give the installation a new machine SID, consistently everywhere.

The old SID is read from SAM (`Domains\\Account\\V`, through its offset table) and must agree
with SECURITY `Policy\\PolAcDmS`. The new one replaces it in: the SAM domain and user values
(structured), alias member lists, PolAcDmS, every key named after a local SID (renamed), every
value holding it in binary or text form, and every security descriptor (sk cell) of every hive
of the image, user hives included. Domain SIDs are different SIDs and are never matched.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from reseal.errors import Refused
from reseal.image.model import OSFamily
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.registry import Key, Value
from reseal.windows.hives import HiveSet, LoadedHive, hive_set
from reseal.windows.sam import (
    domain_sid_from_v,
    rewrite_alias_c,
    rewrite_domain_v,
    rewrite_user_v,
    user_name_from_v,
)
from reseal.windows.secdesc import rewrite_descriptor
from reseal.windows.sid import Sid, SidRewriter, parse_machine_sid, random_machine_sid
from reseal.windows.traces import STRING_TYPES, TracePattern, candidates

ORDER = 20
SHARED_SID_KEY = "reseal.windows.machine-sid"
BUILTIN_WITHOUT_PROFILE = {501, 502, 503, 504}  # Guest, krbtgt, DefaultAccount, WDAGUtilityAccount


@dataclass
class MachineSidOptions:
    user_hives: bool = True  # also rewrite NTUSER.DAT / UsrClass.dat of every profile


@dataclass(frozen=True)
class SidChange:
    """The run's SID change, shared with windows-file-acls."""

    old: Sid
    new: Sid


def validate(request: IdentityRequest, options: MachineSidOptions | None) -> None:
    """Refuse a malformed --machine-sid before anything is opened for writing."""
    if request.machine_sid is not None and request.machine_sid.strip().lower() != "random":
        parse_machine_sid(request.machine_sid)


def read_machine_sid(hives: HiveSet) -> Sid:
    sam = hives.require("SAM")
    account = sam.key("SAM\\Domains\\Account")
    value = account.value("V") if account is not None else None
    if value is None:
        raise Refused(f"{sam.path}: no SAM\\Domains\\Account value V; cannot find the machine SID")
    return domain_sid_from_v(value.raw, where=f"{sam.path} SAM\\Domains\\Account\\V")


def _new_sid(request: IdentityRequest, old: Sid) -> Sid:
    if request.machine_sid is not None and request.machine_sid.strip().lower() != "random":
        return parse_machine_sid(request.machine_sid)
    rng = random.Random(request.seed) if request.seed is not None else random.SystemRandom()
    return random_machine_sid(rng, like=old)


def apply(ctx: OperationContext) -> None:
    hives = hive_set(ctx)
    options: MachineSidOptions = ctx.options or MachineSidOptions()
    old = read_machine_sid(hives)
    security = hives.config("SECURITY")
    if security is not None:
        policy = security.key("Policy\\PolAcDmS")
        stored = policy.value("") if policy is not None else None
        if stored is not None and stored.raw:
            lsa_sid, _ = Sid.from_bytes(stored.raw, where=f"{security.path} Policy\\PolAcDmS")
            if lsa_sid != old:
                raise Refused(
                    f"{security.path}: PolAcDmS holds {lsa_sid} but SAM holds {old}; SAM and "
                    "SECURITY come from different machines; repair the image before a SID change"
                )
    new = _new_sid(ctx.request, old)
    ctx.identity("machine-sid", old, new)
    if new == old:
        return
    ctx.shared[SHARED_SID_KEY] = SidChange(old, new)
    rewriter = SidRewriter(old, new)
    _rewrite_sam(ctx, hives.require("SAM"), rewriter)
    for loaded in hives.every_hive():
        if not options.user_hives and loaded.label not in ("SYSTEM", "SOFTWARE", "SAM",
                                                             "SECURITY", "DEFAULT", "DRIVERS"):
            continue
        if rewrite_hive(ctx, loaded, rewriter):
            hives.mark_changed(loaded)
    _note_dpapi(ctx, hives, old)


def _rewrite_sam(ctx: OperationContext, sam: LoadedHive, rewriter: SidRewriter) -> None:
    """Structured rewrite of the SAM values whose layout is known (offset tables)."""
    account = sam.key("SAM\\Domains\\Account")
    assert account is not None
    value = account.value("V")
    assert value is not None
    where = sam.where("SAM\\Domains\\Account", "V")
    account.set_value("V", value.type, rewrite_domain_v(value.raw, rewriter.map_sid, where=where))
    ctx.change(where, "set", rewriter.old, rewriter.new)
    sam.changed = True
    _rewrite_each(ctx, sam, "SAM\\Domains\\Account\\Users", "V",
                  lambda raw, where: rewrite_user_v(raw, rewriter.map_sid, where=where),
                  "descriptor SIDs under old machine SID")
    for domain in ("Builtin", "Account"):
        _rewrite_each(ctx, sam, f"SAM\\Domains\\{domain}\\Aliases", "C",
                      lambda raw, where: rewrite_alias_c(raw, rewriter.map_sid, where=where),
                      "members under old machine SID")


def _rewrite_each(ctx: OperationContext, sam: LoadedHive, parent: str, value_name: str,
                  rewrite: Callable[[bytes, str], bytes], what: str) -> None:
    """Rewrite `value_name` of every subkey of `parent` (users' V, aliases' C)."""
    key = sam.key(parent)
    for child in key.subkeys() if key is not None else []:
        value = child.value(value_name)
        if value is None:
            continue
        where = sam.where(f"{parent}\\{child.name}", value_name)
        new_raw = rewrite(value.raw, where)
        if new_raw != value.raw:
            child.set_value(value_name, value.type, new_raw)
            ctx.change(where, "set", what, "new machine SID")


def rewrite_hive(ctx: OperationContext, loaded: LoadedHive, rewriter: SidRewriter) -> bool:
    """Descriptors, SID-named keys, value names and value data of one hive; True if changed."""
    changed = False

    def map_descriptor(descriptor: bytes) -> bytes | None:
        return rewrite_descriptor(descriptor, rewriter.map_sid, where=f"{loaded.path} sk cell")

    count = loaded.hive.map_security_descriptors(map_descriptor)
    if count:
        changed = True
        ctx.change(loaded.where(""), "set", f"{count} security descriptors with {rewriter.old}",
                   rewriter.new)
    pattern = TracePattern(str(rewriter.old), digit_boundary=True)
    new_text = str(rewriter.new)
    renames: list[tuple[str, str]] = []
    # only the keys and values where the old SID's bytes occur (one search of the hive)
    found = candidates(loaded.hive, [pattern], [rewriter.old.to_bytes()[2:]])
    for candidate in found.keys:
        key = candidate.key
        if _rewrite_values(ctx, loaded, key, candidate.values, rewriter, pattern, new_text):
            changed = True
        if candidate.name and pattern.found_in_text(key.name):
            renames.append((key.path, pattern.replace_in_text(key.name, new_text)[0]))
    for path, new_name in sorted(renames, key=lambda item: -item[0].count("\\")):
        # the root key too: UsrClass.dat's root is named <SID>_Classes
        loaded.hive.rename_key(path, new_name)
        ctx.change(loaded.where(path), "rename", path.rsplit("\\", 1)[-1] or "(root key)", new_name)
        changed = True
    return changed


def _rewrite_values(ctx: OperationContext, loaded: LoadedHive, key: Key, values: list[Value],
                    rewriter: SidRewriter, pattern: TracePattern, new_text: str) -> bool:
    changed = False
    for value in values:
        raw = value.raw
        new_raw, binary_hits = rewriter.rewrite_binary(raw)
        is_string = value.type in STRING_TYPES
        new_raw, text_hits = pattern.replace_in_bytes(new_raw, new_text,
                                                      same_length_only=not is_string)
        if not is_string and len(new_text) != len(pattern.text) and pattern.found_in_bytes(new_raw):
            ctx.warn(f"{loaded.where(key.path, value.name)}: holds the old SID as text inside "
                     "binary data of another length; left as it is")
        renamed = pattern.found_in_text(value.name)
        if new_raw == raw and not renamed:
            continue
        changed = True
        where = loaded.where(key.path, value.name)
        if renamed:
            new_name = pattern.replace_in_text(value.name, new_text)[0]
            key.delete_value(value.name)
            key.set_value(new_name, value.type, new_raw)
            ctx.change(where, "rename", value.name, new_name)
        else:
            key.set_value(value.name, value.type, new_raw)
            ctx.change(where, "set", f"{binary_hits + text_hits} x {rewriter.old}", rewriter.new)
    return changed


def _note_dpapi(ctx: OperationContext, hives: HiveSet, old: Sid) -> None:
    sam = hives.require("SAM")
    users = sam.key("SAM\\Domains\\Account\\Users")
    for user in users.subkeys() if users is not None else []:
        v = user.value("V")
        if v is None:
            continue
        try:
            rid = int(user.name, 16)
        except ValueError:
            continue
        if rid in BUILTIN_WITHOUT_PROFILE:
            continue
        name = user_name_from_v(v.raw, where=sam.where(user.path, "V"))
        ctx.note(
            f"local user {name} ({old}-{rid}): DPAPI master keys are derived from the user's SID; "
            "secrets they protect (saved credentials, browser passwords, EFS keys) can no longer "
            "be decrypted after the SID change"
        )


OPERATION = Operation(
    name="windows-machine-sid",
    description="Give Windows a new machine SID (SAM, SECURITY, SID-named keys, every security descriptor)",
    os=OSFamily.WINDOWS,
    default_enabled=True,
    apply=apply,
    options_type=MachineSidOptions,
)
