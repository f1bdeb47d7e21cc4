"""linux-utmp (off by default): who was logged in on the master, like virt-sysprep's utmp:
utmp is removed (it describes a running system), wtmp, btmp and lastlog are emptied (kept
with their mode and group) and their rotated copies removed."""

from __future__ import annotations

from reseal.image.model import OSFamily
from reseal.operations._hygiene import HygieneOptions, Sweep, run_sweep
from reseal.operations.base import Operation, OperationContext

ORDER = 80
UTMP = ("/var/run/utmp", "/run/utmp")
RECORDS = ("/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog")


def build(sweep: Sweep) -> None:
    for path in UTMP:
        sweep.file(path)
    for path in RECORDS:
        sweep.emptied(path)
        for name in sweep.fs.listdir("/var/log"):
            rotated = f"/var/log/{name}"
            if rotated != path and rotated.startswith(path + "."):
                sweep.file(rotated)


def apply(ctx: OperationContext) -> None:
    run_sweep(ctx, "login records", build, ctx.options)


OPERATION = Operation(
    name="linux-utmp",
    description="remove utmp, empty wtmp/btmp/lastlog and remove their rotated copies",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=HygieneOptions,
)
