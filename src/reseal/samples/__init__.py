"""Sample disk images for the tests and the demo (`python -m reseal.samples build OUTDIR`)."""

from reseal.samples.builders import (
    SampleImage,
    build_linux_gpt,
    build_linux_mbr,
    build_qcow2,
    build_windows_gpt,
    build_windows_mbr,
)
from reseal.samples.catalog import build_all, project_hives

__all__ = [
    "SampleImage",
    "build_all",
    "build_linux_gpt",
    "build_linux_mbr",
    "build_qcow2",
    "build_windows_gpt",
    "build_windows_mbr",
    "project_hives",
]
