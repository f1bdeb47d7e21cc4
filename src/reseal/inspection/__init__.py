"""`reseal inspect`: gather what an opened target holds into a report, and render it."""

from reseal.inspection.gather import inspect_target
from reseal.inspection.model import InspectReport, LinuxReport, PartitionRow, WindowsReport
from reseal.inspection.render import render_text

__all__ = [
    "InspectReport",
    "LinuxReport",
    "PartitionRow",
    "WindowsReport",
    "inspect_target",
    "render_text",
]
