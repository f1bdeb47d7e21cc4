"""The operation from an answer file: `operations: options: windows-drivers: {paths: ...}`."""

from __future__ import annotations

from pathlib import Path

from tests.drivers.conftest import SAMPLES, Image
from tests.drivers.oracles import pyreg_values

from reseal.operations.windows_drivers import DriversOptions
from reseal.pipeline.answerfile import settings_for_machine
from reseal.pipeline.runner import run_generalize


def test_answer_file_options_stage_the_packages(make_image, tmp_path: Path) -> None:
    image: Image = make_image("win7")
    answer = tmp_path / "answer.yaml"
    answer.write_text(f"""
os: windows
machines:
  - hostname: lab-1
operations:
  enable: [windows-drivers]
  options:
    windows-drivers: {{paths: ["{SAMPLES / 'resealstor'}"], boot_critical: true}}
""")
    settings = settings_for_machine(answer, "lab-1")
    assert settings.options["windows-drivers"] == DriversOptions(
        paths=[str(SAMPLES / "resealstor")], boot_critical=True)
    settings.only = ["windows-drivers"]  # this test checks staging, not the other operations
    result = run_generalize(image.root, settings, run_dir=tmp_path / "run")
    assert result.ok
    assert any(c.where.endswith("Services\\resealstor") for c in result.report.changes)
    service = pyreg_values(image.system, "ControlSet002\\Services\\resealstor")
    assert service["Start"][1] == 0
    assert service["ImagePath"][1] == "\\SystemRoot\\system32\\drivers\\resealstor.sys"


def test_operation_without_paths_only_notes(make_image, tmp_path: Path) -> None:
    from reseal.pipeline.runner import RunSettings

    image: Image = make_image("win10")
    settings = RunSettings(only=["windows-drivers"])
    result = run_generalize(image.root, settings, run_dir=tmp_path / "run")
    assert result.ok and not result.report.changes
    assert any("nothing staged" in note for note in result.report.notes)
