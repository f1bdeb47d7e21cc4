"""linux-tmp-files (off by default): everything in /tmp and /var/tmp, like virt-sysprep's
tmp-files; the two directories themselves stay, with their sticky mode."""

from __future__ import annotations

from reseal.image.model import OSFamily
from reseal.operations._hygiene import HygieneOptions, Sweep, run_sweep
from reseal.operations.base import Operation, OperationContext

ORDER = 80
TMP_DIRS = ("/tmp", "/var/tmp")


def build(sweep: Sweep) -> None:
    for top in TMP_DIRS:
        sweep.tree(top, remove_dirs=lambda _path: True)


def apply(ctx: OperationContext) -> None:
    run_sweep(ctx, "temporary files", build, ctx.options)


OPERATION = Operation(
    name="linux-tmp-files",
    description="remove everything in /tmp and /var/tmp (the directories stay)",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=HygieneOptions,
)
