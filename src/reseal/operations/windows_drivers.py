"""windows-drivers: stage driver packages into the image (DISM /Image /Add-Driver, offline).

Off by default; the answer file's `drivers:` list (or `options: windows-drivers: paths:`)
turns it on. Every package is read and checked (architecture, OS version, signature, files,
paths) before the first byte is written; a package named explicitly that does not fit the
image is an error, a package found in a folder that does not fit is skipped with the reason.
See `reseal.drivers.stage` for what is written where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reseal.drivers.inf import load_inf
from reseal.drivers.package import DriverPackage, build_package, find_infs
from reseal.drivers.select import WindowsVersion, select_models
from reseal.drivers.stage import DriverStore, StagedPackage, image_version
from reseal.errors import BadInput
from reseal.image.model import OSFamily, WindowsSystem
from reseal.operations.base import IdentityRequest, Operation, OperationContext
from reseal.windows.hives import hive_set

ORDER = 20  # before the identity operations: they may read services it adds


@dataclass
class DriversOptions:
    paths: list[str] = field(default_factory=list)  # INF files or folders of packages
    allow_unsigned: bool = False  # stage packages without a CatalogFile
    boot_critical: bool = False  # treat every package as boot-critical storage


@dataclass
class PackagePlan:
    """The packages to stage and the ones skipped (INF path -> reason)."""

    packages: list[DriverPackage] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def validate(request: IdentityRequest, options: DriversOptions | None) -> None:
    """Paths exist and every INF parses (before the image is opened)."""
    del request
    if options is None:
        return
    for inf in find_infs([Path(p) for p in options.paths]):
        load_inf(inf)


def plan_packages(paths: list[Path], target: WindowsVersion, *, allow_unsigned: bool,
                  boot_critical: bool) -> PackagePlan:
    """Build every package; INFs named directly must apply, INFs found in folders may not."""
    plan = PackagePlan()
    named = {p.resolve() for p in paths if p.is_file()}
    for inf_path in find_infs(paths):
        if inf_path.resolve() not in named:
            selection = select_models(load_inf(inf_path), target)
            if not selection.applies:
                plan.skipped[str(inf_path)] = selection.skipped_reason
                continue
        plan.packages.append(build_package(inf_path, target, allow_unsigned=allow_unsigned,
                                           boot_critical=boot_critical))
    if not plan.packages:
        reasons = "; ".join(plan.skipped.values()) or "no .inf files found"
        raise BadInput(f"{', '.join(str(p) for p in paths)}: no driver package fits "
                       f"{target.label()} ({reasons})")
    return plan


def stage_all(store: DriverStore, plan: PackagePlan) -> list[StagedPackage]:
    """Check every package against the image first, then stage them in order."""
    for package in plan.packages:
        if store.find_staged(package) is None:
            store.check(package)
    return [store.add(package) for package in plan.packages]


def apply(ctx: OperationContext) -> None:
    options: DriversOptions = ctx.options or DriversOptions()
    if not options.paths:
        ctx.note("no driver packages given; nothing staged")
        return
    assert isinstance(ctx.system, WindowsSystem)
    hives = hive_set(ctx)
    target = image_version(hives)
    plan = plan_packages([Path(p) for p in options.paths], target,
                         allow_unsigned=options.allow_unsigned,
                         boot_critical=options.boot_critical)
    for inf_path, reason in plan.skipped.items():
        ctx.note(f"skipped {inf_path}: {reason}")
    store = DriverStore(ctx.system, hives, target,
                        record=lambda where, action, new: ctx.change(where, action, new=new))
    for staged in stage_all(store, plan):
        for note in staged.notes:
            ctx.note(note)


OPERATION = Operation(
    name="windows-drivers",
    description="stage driver packages (INF folders) into the image, like DISM /Add-Driver",
    os=OSFamily.WINDOWS,
    default_enabled=False,
    apply=apply,
    options_type=DriversOptions,
)
