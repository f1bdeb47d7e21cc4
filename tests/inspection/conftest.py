"""The inspect tests use the same session-built sample images and leak check as tests/image."""

from tests.image.conftest import (  # noqa: F401  (pytest fixtures, found by name)
    images_dir,
    linux_gpt,
    linux_mbr,
    linux_qcow2,
    no_leaks,
    reseal_tempdir,
    win7_hives,
    win_hives,
    windows_gpt,
    windows_mbr,
    windows_qcow2,
)
