"""`--html report.html`: one self-contained file an administrator opens in a browser.

Jinja2 with autoescaping on for every value: NetBIOS names, SSH banners, host names and paths
come from hosts and images and are hostile text. As a second wall, the page carries a Content
Security Policy that allows no network fetch at all and only the page's own script (by its
SHA-256), so even a value that escaped escaping could not run or load anything.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from pathlib import Path

import jinja2

from reseal.audit.kinds import KINDS, SEVERITY_ORDER
from reseal.audit.model import AuditReport
from reseal.audit.render import headline
from reseal.fileio import atomic_write

TEMPLATES = Path(__file__).resolve().parent / "templates"
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var down = th.getAttribute('data-dir') !== 'down';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
      th.setAttribute('data-dir', down ? 'down' : 'up');
      rows.sort(function (a, b) {
        var x = a.cells[column].getAttribute('data-key') || a.cells[column].textContent;
        var y = b.cells[column].getAttribute('data-key') || b.cells[column].textContent;
        var r = x.localeCompare(y, undefined, {numeric: true});
        return down ? -r : r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
""".strip()


def address_ranges(addresses: list[str]) -> list[str]:
    """Consecutive IPv4 addresses folded into `a-b` ranges (anything else left as it is)."""
    import ipaddress

    numbers, others = [], []
    for text in addresses:
        try:
            numbers.append(int(ipaddress.IPv4Address(text)))
        except ValueError:
            others.append(text)
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    ranges = [str(ipaddress.IPv4Address(a)) if a == b else
              f"{ipaddress.IPv4Address(a)}-{ipaddress.IPv4Address(b)}" for a, b in runs]
    return ranges + others


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals["zip"] = zip
    env.filters["ranges"] = address_ranges
    return env


def render_html(report: AuditReport) -> str:
    per_kind: Counter[str] = Counter()
    machines_per_kind: dict[str, set[str]] = {}
    for finding in report.findings:
        per_kind[finding.kind] += 1
        machines_per_kind.setdefault(finding.kind, set()).update(finding.machines)
    kinds = [(KINDS[k], per_kind[k], len(machines_per_kind[k]))
             for k in sorted(per_kind, key=lambda k: (-SEVERITY_ORDER[KINDS[k].severity], k))]
    digest = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    template = _environment().get_template("report.html.j2")
    return template.render(report=report, kinds=kinds, headline=headline(report),
                           script=SORT_SCRIPT, script_hash=f"sha256-{digest}",
                           severity_order=SEVERITY_ORDER)


def write_html(report: AuditReport, path: Path) -> None:
    atomic_write(path, render_html(report).encode("utf-8"), mode=0o600)
