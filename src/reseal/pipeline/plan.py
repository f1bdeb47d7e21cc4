"""What one machine of an answer file becomes: the typed result of parsing and validation.

The answer-file loader produces one `GeneralizePlan` per machine; the runner and the batch
layer consume it. Nothing here touches an image: a plan is pure data, so a dry run can print
it and a batch can hand it to a worker process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reseal.domain.settings import DomainSettings, FirstBootSettings, PasswordRef
from reseal.operations.base import IdentityRequest

__all__ = ["CloneSpec", "DomainSettings", "FirstBootSettings", "GeneralizePlan", "PasswordRef"]


@dataclass(frozen=True)
class CloneSpec:
    """A clone to make from a master image before generalizing it."""

    master: Path
    path: Path  # where the clone is written
    mode: str = "copy"  # "copy" (reflink or sparse copy) or "overlay" (qcow2 on the master)


@dataclass
class GeneralizePlan:
    """Everything needed to generalize one machine."""

    machine: str
    request: IdentityRequest
    enable: list[str] = field(default_factory=list)
    disable: list[str] = field(default_factory=list)
    options: dict[str, object] = field(default_factory=dict)  # op name -> options instance
    drivers: list[Path] = field(default_factory=list)
    domain: DomainSettings | None = None
    firstboot: FirstBootSettings | None = None
    target: Path | None = None  # an existing image or directory to generalize in place
    clone: CloneSpec | None = None  # or a clone to make first (then target is clone.path)
    mac: str | None = None  # recorded for the pipeline (DHCP reservations), not applied
    extra: dict[str, str] = field(default_factory=dict)  # other per-machine table columns

    @property
    def target_path(self) -> Path | None:
        """The image the runner opens: the clone once made, or the given target."""
        if self.clone is not None:
            return self.clone.path
        return self.target
