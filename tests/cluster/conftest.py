"""Fixtures for cluster batches: a Linux master image and a real Dask cluster."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cluster.daskprocs import DASK, DaskCluster, dask_cluster


@pytest.fixture(scope="module")
def linux_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")
    for tool in ("sfdisk", "mke2fs", "mcopy", "debugfs"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    from reseal.samples.builders import build_linux_gpt

    directory = tmp_path_factory.mktemp("cluster-master")
    return build_linux_gpt(directory / "master.img", hostname="gold-master").path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    if not DASK.exists():
        pytest.skip("Dask is not installed (pip install 'reseal[cluster]')")
    with dask_cluster(tmp_path / "cluster") as running:
        yield running
