"""MKL serves MLX's CPU matrix products on Linux where it is installed (the dev install puts it there), and only
when loaded before MLX; `MLX_SEGMENTATION_BLAS=reference` keeps MLX's bundled BLAS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlx_segmentation import cpu_blas

PROBE = """
import sys
{first}
import mlx.core as mx
from mlx_segmentation import cpu_blas
a = mx.ones((64, 64))
mx.eval(a @ a)
maps = open("/proc/self/maps").read()
print(cpu_blas.loaded is not None, "libmkl_core" in maps, "libblas" in maps)
"""

LINUX_X86 = sys.platform.startswith("linux") and os.uname().machine == "x86_64"


def probe(first: str, **env: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != cpu_blas.CHOICE} | env,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


@pytest.mark.skipif(not LINUX_X86, reason="the cpu extra installs MKL on Linux x86-64 only")
def test_the_dev_install_has_mkl_and_mlx_uses_it():
    assert cpu_blas.mkl_library() is not None  # pyproject's dev extra includes cpu on this platform
    loaded, mkl_mapped, _ = probe("import mlx_segmentation")
    assert loaded == "True" and mkl_mapped == "True"  # MKL's kernels were loaded by MLX's product


@pytest.mark.skipif(not LINUX_X86, reason="the cpu extra installs MKL on Linux x86-64 only")
@pytest.mark.parametrize("entry", ["import converter.cli", "import checks.run", "import checks.diarization"])
def test_every_entry_point_loads_it_before_mlx(entry):
    """The converter's and the checks' modules import mlx_segmentation before MLX; so does this test session."""
    assert probe(entry)[:2] == ["True", "True"]
    assert cpu_blas.loaded is not None


@pytest.mark.skipif(not LINUX_X86, reason="the cpu extra installs MKL on Linux x86-64 only")
def test_reference_keeps_mlx_own_blas():
    assert probe("import mlx_segmentation", MLX_SEGMENTATION_BLAS="reference")[:2] == ["False", "False"]


@pytest.mark.skipif(not LINUX_X86, reason="the cpu extra installs MKL on Linux x86-64 only")
def test_too_late_once_mlx_is_imported():
    """Loaded after MLX, MKL would not serve it: nothing is loaded, and MLX keeps its own BLAS."""
    assert probe("import mlx.core; import mlx_segmentation")[:2] == ["False", "False"]


@pytest.mark.slow
def test_on_mlx_own_blas_segmentation_passes_and_embeddings_fail_their_float64_gate(
    real_checkpoint_3, fixture_checkpoints, tmp_path
):
    """Where MKL is not installed (a runtime-only install, macOS aside), MLX's bundled BLAS computes: the real
    segmentation-3.0 passes its parity checks there; the WeSpeaker fixture's embeddings, each convolution one
    running float32 sum, land 4 to 7 times further from float64 than pyannote's float32 and fail the full-model
    gate (their cosine still passes), so a build exits 1 and says so (the `convert` extra brings MKL)."""
    runs = {}
    for name, checkpoint in (("segmentation-3.0", real_checkpoint_3), ("wespeaker", fixture_checkpoints["wespeaker"])):
        command = ["build", "--checkpoint", str(checkpoint), "--out", str(tmp_path / name)]
        runs[name] = subprocess.run(
            [sys.executable, "-m", "converter", *command],
            capture_output=True,
            text=True,
            env=os.environ | {cpu_blas.CHOICE: "reference"},
        )
    assert runs["segmentation-3.0"].returncode == 0, runs["segmentation-3.0"].stderr[-2000:]
    assert "; checks passed: " in runs["segmentation-3.0"].stdout.splitlines()[-1]
    assert runs["wespeaker"].returncode == 1, runs["wespeaker"].stderr[-2000:]
    assert "; checks FAILED (first failure: speech 1 s)" in runs["wespeaker"].stdout.splitlines()[-1]
    report = json.loads((tmp_path / "wespeaker" / "checks.json").read_text())
    assert all(c["passed"] for c in report["components"]) and report["ranking"]["same_order"]
    for check in report["full_model"]:
        assert check["min_cosine"] >= 0.9999 and check["max_abs_vs_float64"] > check["tolerance"]
        assert check["max_abs_vs_float64"] > 3 * check["reference_float32_error"] and not check["passed"]
