"""linux-crash-data (off by default): kernel crash dumps and core files, like virt-sysprep's
crash-data: kdump's /var/crash, systemd-coredump, abrt and apport; they hold the master's
memory, secrets included."""

from __future__ import annotations

from reseal.image.model import OSFamily
from reseal.operations._hygiene import HygieneOptions, Sweep, run_sweep
from reseal.operations.base import Operation, OperationContext

ORDER = 80
CRASH_TREES = ("/var/crash", "/var/lib/systemd/coredump", "/var/spool/abrt", "/var/tmp/abrt",
               "/var/lib/apport/coredump", "/var/log/dump")


def build(sweep: Sweep) -> None:
    for top in CRASH_TREES:
        sweep.tree(top, remove_dirs=lambda _path: True)


def apply(ctx: OperationContext) -> None:
    run_sweep(ctx, "crash data", build, ctx.options)


OPERATION = Operation(
    name="linux-crash-data",
    description="remove crash dumps and core files (kdump, systemd-coredump, abrt, apport)",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=HygieneOptions,
)
