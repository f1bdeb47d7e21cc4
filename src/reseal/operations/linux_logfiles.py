"""linux-logfiles (off by default): the master's logs, like virt-sysprep's logfiles.

Every file below /var/log goes (rotated logs, the systemd journal, audit, installer and
package-manager logs); directories stay, with their modes, so daemons find them; the
journal's directory named after the master's machine-id goes too. Login records (wtmp, btmp,
lastlog, faillog) are emptied rather than removed, so their mode and group stay as the tools
that write them expect.
"""

from __future__ import annotations

import re

from reseal.image.model import OSFamily
from reseal.operations._hygiene import HygieneOptions, Sweep, run_sweep
from reseal.operations.base import Operation, OperationContext

ORDER = 80
LOGIN_RECORDS = ("/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog", "/var/log/faillog",
                 "/var/log/tallylog")
INSTALLER_LOGS = ("/root/anaconda-ks.cfg", "/root/original-ks.cfg", "/root/install.log",
                  "/root/install.log.syslog")
JOURNAL_DIR = re.compile(r"^/var/log/journal/[0-9a-f]{32}(\.[^/]*)?$")


def build(sweep: Sweep) -> None:
    for path in LOGIN_RECORDS:
        sweep.emptied(path)
    sweep.tree("/var/log", keep=lambda path: path in LOGIN_RECORDS,
               remove_dirs=lambda path: bool(JOURNAL_DIR.match(path)))
    for path in INSTALLER_LOGS:
        sweep.file(path)


def apply(ctx: OperationContext) -> None:
    run_sweep(ctx, "logs", build, ctx.options)


OPERATION = Operation(
    name="linux-logfiles",
    description="remove the master's logs below /var/log (journal included) and installer "
    "logs; empty wtmp/btmp/lastlog",
    os=OSFamily.LINUX,
    default_enabled=False,
    apply=apply,
    options_type=HygieneOptions,
)
