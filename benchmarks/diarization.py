"""Speaker diarization, our MLX pipeline against pyannote.audio 4.0.7's SpeakerDiarization: parity and speed.

    python benchmarks/diarization.py --segmentation SEG.bin --embedding WESPEAKER.ckpt --minutes 5 60 \
        [--clustering community-1|3.1] [--out diarization.json] [--append]

Makes a pyannote pipeline folder of the two checkpoints (tests/pipeline_sources.py: community-1's layout with
VBx clustering and a seeded PLDA, or speaker-diarization-3.1's agglomerative clustering), converts it with
`build_pipeline` (no checks), and builds pyannote's pipeline with the same models and parameters
(`checks.diarization.pyannote_pipeline`). On a machine with CUDA, pyannote's pipeline runs on the GPU in exact
float32 (TF32 off) and MLX on its default device (the GPU with the CUDA wheel, exact float32 too); on Apple
silicon, pyannote's on "mps" and MLX on Metal (BENCH_TORCH_DEVICE=cpu, cuda or mps overrides PyTorch's device).

After one warm-up run of each pipeline on the first `--warmup-seconds` of sample.wav, for each `--minutes`:
- SPEED: each pipeline once on `checks.audio.long_recording(minutes * 60)` (seeded real speech from
  sample.wav), timed end to end and per stage from its hook calls, with its peak GPU memory;
- PARITY: `checks.diarization.diarization_check` on the same recording written to a wav (it runs both
  pipelines again and compares every stage: segmentation, count, embeddings, clustering, DER, speakers).
Results go to `--out` after each step (so a run cut short keeps what it measured); `--append` adds to the
recordings already there. Run from the repository root with PYTHONPATH=. (it imports checks/, converter/ and
tests/pipeline_sources.py); set PYANNOTE_SAMPLE_WAV where pyannote.audio's sample.wav is not installed.
benchmarks/gpu_diarization.sh is how it ran on the device's CUDA machine.

Memory, per timed run: `mlx_peak_bytes` is `mx.get_peak_memory()` after `mx.reset_peak_memory()` (MLX's
allocations, its weights included once it allocates); `torch_cuda_max_allocated_bytes` (and reserved) is
PyTorch's CUDA allocator's peak after `reset_peak_memory_stats`, which starts from what is allocated then:
pyannote's models stay on the GPU, so our run shows their resident weights there and nothing of its own.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # pyannote.audio's telemetry
os.environ.setdefault("MLX_ENABLE_TF32", "0")  # exact float32 matrix products in MLX's CUDA backend

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

if torch.cuda.is_available():  # load PyTorch's own cuDNN before MLX's CUDA libraries bring another one
    torch.backends.cudnn.version()
import mlx_segmentation  # noqa: E402, I001  (before MLX: where installed, it loads MKL for MLX's CPU backend)
import mlx.core as mx  # noqa: E402

from checks.audio import long_recording, read_mono, sample_wav  # noqa: E402
from checks.diarization import (  # noqa: E402
    MAX_COUNT_DIFFERING,
    MAX_DER,
    MAX_SEGMENTATION_DIFFERING,
    MIN_EMBEDDING_COSINE,
    diarization_check,
    pyannote_pipeline,
)
from checks.reference import import_pyannote_audio  # noqa: E402
from converter.pipeline_build import build_pipeline  # noqa: E402
from converter.pipeline_source import read_pipeline_folder  # noqa: E402
from converter.reader import read_checkpoint  # noqa: E402
from mlx_segmentation import recurrence  # noqa: E402
from mlx_segmentation.pipeline import SpeakerDiarization  # noqa: E402
from mlx_segmentation.pipeline_loading import PipelineParts, load_pipeline_parts  # noqa: E402
from speed import device_name, torch_device  # noqa: E402

TORCH_DEVICE = torch_device()
CUDA = TORCH_DEVICE == "cuda"
SAMPLE_RATE = 16000
# stage names, each ending at the hook call named (None: the pipeline's return)
OUR_STAGES = [
    ("segmentation", "segmentation"),
    ("speaker_counting", "speaker_counting"),
    ("embeddings", "embeddings"),
    ("clustering", "clusters"),
    ("reconstruction", None),
]
THEIR_STAGES = [
    ("segmentation", "segmentation"),
    ("speaker_counting", "speaker_counting"),
    ("embeddings", "embeddings"),
    ("clustering", "discrete_diarization"),  # pyannote hooks the discrete diarization, not the clusters
    ("reconstruction", None),
]
STAGE_NOTE = (
    "Each stage runs from the previous hook call to the one named. Ours: segmentation, speaker_counting, "
    "embeddings, clusters, return; 'reconstruction' is both diarizations (and exclusive) from the clusters. "
    "pyannote's: segmentation, speaker_counting, embeddings, discrete_diarization, return; its 'clustering' "
    "also holds the first reconstruct (discrete diarization), its 'reconstruction' the annotations and the "
    "exclusive diarization. 'after_embeddings' (clustering + reconstruction) compares like with like."
)


def sync() -> None:
    """Wait for both frameworks' queued GPU work."""
    mx.synchronize()
    if CUDA:
        torch.cuda.synchronize()
    elif TORCH_DEVICE == "mps":
        torch.mps.synchronize()


class StageClock:
    """Wall-clock seconds between a pipeline's hook calls."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}

    def mark(self, step: str) -> None:
        sync()
        self.marks.setdefault(step, time.perf_counter())

    def stages(self, end: float, names: list[tuple[str, str | None]]) -> dict[str, float]:
        seconds, previous = {}, self.start
        for name, step in names:
            at = end if step is None else self.marks.get(step, previous)
            seconds[name] = round(at - previous, 3)
            previous = at
        seconds["after_embeddings"] = round(seconds["clustering"] + seconds["reconstruction"], 3)
        return seconds


def reset_peak_memory() -> None:
    sync()
    mx.clear_cache()
    mx.reset_peak_memory()
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, int]:
    """Bytes: MLX's peak (its GPU memory where MLX runs on a GPU) and PyTorch's CUDA allocator's peaks."""
    peaks = {"mlx_peak_bytes": int(mx.get_peak_memory())}
    if CUDA:
        peaks["torch_cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        peaks["torch_cuda_max_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
    return peaks


def run_ours(ours: SpeakerDiarization, waveform: np.ndarray) -> dict[str, Any]:
    """One timed run of our pipeline."""
    reset_peak_memory()
    clock = StageClock()
    diarization = ours(waveform, sample_rate=SAMPLE_RATE, hook=lambda step, artefact: clock.mark(step))
    sync()
    end = time.perf_counter()
    return {
        "total_seconds": round(end - clock.start, 3),
        "stages": clock.stages(end, OUR_STAGES),
        "speakers": len(diarization.labels),
        **peak_memory(),
    }


def run_theirs(theirs: Any, waveform: np.ndarray, uri: str) -> dict[str, Any]:
    """One timed run of pyannote.audio's pipeline, the waveform handed over in memory as diarization_check does."""
    reset_peak_memory()
    file = {"waveform": torch.from_numpy(waveform[None]), "sample_rate": SAMPLE_RATE, "uri": uri}

    def hook(step: str, artefact: Any, file: Any = None, **progress: Any) -> None:
        if not progress:  # progress calls (total=, completed=) are inside a stage
            clock.mark(step)

    clock = StageClock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = theirs.apply(file, hook=hook)
    sync()
    end = time.perf_counter()
    return {
        "total_seconds": round(end - clock.start, 3),
        "stages": clock.stages(end, THEIR_STAGES),
        "speakers": len(output.speaker_diarization.labels()),
        **peak_memory(),
    }


def source_folder(kind: str, folder: Path, segmentation: Path, embedding: Path) -> Path:
    """A pyannote pipeline folder of the two checkpoints, made by the tests' helpers."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pipeline_sources import make_3_1, make_community_1

    make = make_community_1 if kind == "community-1" else make_3_1
    return make(folder, segmentation, embedding)


def our_pipeline(
    parts: PipelineParts, embedding_batch_size: int | None, segmentation_batch_size: int | None = None
) -> SpeakerDiarization:
    """Ours with the folder's config, its batch sizes replaced by those given (pyannote's keeps the folder's)."""
    update = {"embedding_batch_size": embedding_batch_size, "segmentation_batch_size": segmentation_batch_size}
    config = parts.config.model_copy(update={k: v for k, v in update.items() if v is not None})
    return SpeakerDiarization(parts.segmentation, parts.embedding, config, parts.plda)


def pipelines(source: Path, out: Path, embedding_batch_size: int | None) -> tuple[PipelineParts, Any]:
    """Ours converted (no checks) and loaded, and pyannote.audio's with the same models and parameters (and
    the folder's batch sizes), on the GPU if any."""
    build_pipeline(source, out, check=None, log=lambda message: None)
    parts = load_pipeline_parts(out)
    read = read_pipeline_folder(source)
    theirs = pyannote_pipeline(
        parts.config,
        read_checkpoint(read.segmentation),
        read_checkpoint(read.embedding),
        read.plda,
        our_pipeline(parts, embedding_batch_size),
    )
    if TORCH_DEVICE != "cpu":
        theirs.to(torch.device(TORCH_DEVICE))
    return parts, theirs


def warm_up(ours: SpeakerDiarization, theirs: Any, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    waveform, rate = read_mono(sample_wav())
    if rate != SAMPLE_RATE:
        raise ValueError(f"{sample_wav()} is {rate} Hz")
    waveform = np.ascontiguousarray(waveform[: int(seconds * rate)])
    result = {"seconds": len(waveform) / rate, "ours": run_ours(ours, waveform)}
    log(f"warm-up ours: {result['ours']['total_seconds']} s")
    result["pyannote"] = run_theirs(theirs, waveform, "warmup")
    log(f"warm-up pyannote: {result['pyannote']['total_seconds']} s")
    return result


def warm_up_ours(
    parts: PipelineParts,
    theirs: Any,
    seconds: float,
    sizes: list[int | None],
    log: Callable[[str], None],
    segmentation_batch_size: int | None = None,
) -> tuple[SpeakerDiarization, dict[str, Any]]:
    """The warm-up with our first embedding batch size that MLX runs (each failure recorded)."""
    failures = []
    for size in sizes:
        ours = our_pipeline(parts, size, segmentation_batch_size)
        try:
            result = warm_up(ours, theirs, seconds, log)
            return ours, {**result, "our_embedding_batch_size": ours.config.embedding_batch_size, "failures": failures}
        except RuntimeError as error:
            failures.append({"embedding_batch_size": ours.config.embedding_batch_size, "error": str(error)[:2000]})
            log(f"warm-up failed with our embedding_batch_size {ours.config.embedding_batch_size}: {error}")
    raise RuntimeError(f"every embedding batch size failed: {failures}")


def measure(
    ours: SpeakerDiarization,
    theirs: Any,
    minutes: float,
    folder: Path,
    parts: list[str],
    entry: dict[str, Any],
    save: Callable[[dict], None],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Speed, then parity (those of them in `parts`), of one recording, into `entry` (which may hold an earlier
    run's other part); `save` is called with the entry after each step."""
    waveform = long_recording(minutes * 60)
    wav = folder / f"recording_{minutes:g}min.wav"
    soundfile.write(wav, waveform, SAMPLE_RATE, subtype="FLOAT")
    waveform, _ = read_mono(wav)  # what diarization_check reads
    entry.update(minutes=minutes, duration_seconds=round(len(waveform) / SAMPLE_RATE, 3))
    if "speed" in parts:
        speed(ours, theirs, waveform, minutes, wav.stem, entry, save, log)
    if "parity" in parts:
        start = time.perf_counter()
        check = diarization_check(ours, theirs, wav)
        entry["check_seconds"] = round(time.perf_counter() - start, 1)
        entry["parity"] = check.model_dump()
        log(f"{minutes:g} min parity: {'passed' if check.passed else 'FAILED'} {check.model_dump()}")
        save(entry)
    return entry


def speed(
    ours: SpeakerDiarization,
    theirs: Any,
    waveform: np.ndarray,
    minutes: float,
    uri: str,
    entry: dict[str, Any],
    save: Callable[[dict], None],
    log: Callable[[str], None],
) -> None:
    """Each pipeline once on the recording, timed."""
    entry["ours"] = run_ours(ours, waveform)
    log(f"{minutes:g} min ours: {entry['ours']['total_seconds']} s {entry['ours']['stages']}")
    save(entry)
    entry["pyannote"] = run_theirs(theirs, waveform, uri)
    log(f"{minutes:g} min pyannote: {entry['pyannote']['total_seconds']} s {entry['pyannote']['stages']}")
    entry["pyannote_over_ours_time"] = round(entry["pyannote"]["total_seconds"] / entry["ours"]["total_seconds"], 3)
    save(entry)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("mlx", "mlx-cuda-13", "mlx-cpu", "numpy", "scipy", "torch", "torchaudio", "pyannote.audio"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "device": device_name(TORCH_DEVICE),
        "mlx_device": str(mx.default_device()),
        "mlx_gpu_backend": recurrence.gpu_backend(),
        "mlx_enable_tf32": os.environ.get("MLX_ENABLE_TF32"),
        "torch_device": TORCH_DEVICE,
        "torch_tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "torch_threads": torch.get_num_threads(),
        "mlx_cpu_blas": mlx_segmentation.cpu_blas.described(),
        "platform": platform.platform(),
        "versions": versions(),
        "clustering": args.clustering,
        "checkpoints": {
            "segmentation": {"file": args.segmentation.name, "sha256": sha256(args.segmentation)},
            "embedding": {"file": args.embedding.name, "sha256": sha256(args.embedding)},
        },
        "gates": {
            "max_segmentation_differing": MAX_SEGMENTATION_DIFFERING,
            "max_count_differing": MAX_COUNT_DIFFERING,
            "min_embedding_cosine": MIN_EMBEDDING_COSINE,
            "max_der": MAX_DER,
        },
        "stage_note": STAGE_NOTE,
    }


def table(recordings: list[dict]) -> str:
    header = f"{'minutes':>7} {'side':<9} {'total s':>8} {'seg':>7} {'count':>6} {'embed':>8} {'after':>7}"
    lines = [f"{header} {'peak MB':>9}"]
    for entry in recordings:
        for side in ("ours", "pyannote"):
            if side not in entry:
                continue
            r, s = entry[side], entry[side]["stages"]
            peak = r["mlx_peak_bytes"] if side == "ours" else r.get("torch_cuda_max_allocated_bytes", 0)
            lines.append(
                f"{entry['minutes']:>7g} {side:<9} {r['total_seconds']:>8.2f} {s['segmentation']:>7.2f} "
                f"{s['speaker_counting']:>6.2f} {s['embeddings']:>8.2f} {s['after_embeddings']:>7.2f} "
                f"{peak / 2**20:>9.0f}"
            )
        if "parity" in entry:
            p = entry["parity"]
            lines.append(
                f"{'':>7} parity: {'passed' if p['passed'] else 'FAILED'}, DER {100 * p['der_vs_pyannote']:.3f}%, "
                f"exclusive {100 * p['exclusive_der_vs_pyannote']:.3f}%, speakers {p['speakers']} "
                f"({p['reference_speakers']}), RTTM {'identical' if p['rttm_identical'] else 'different'}, "
                f"min cosine {p['min_embedding_cosine']:.8f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmentation", type=Path, required=True, help="pyannote segmentation checkpoint")
    parser.add_argument("--embedding", type=Path, required=True, help="pyannote WeSpeakerResNet34 checkpoint")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 60.0])
    parser.add_argument("--clustering", choices=["community-1", "3.1"], default="community-1")
    parser.add_argument("--parts", nargs="+", choices=["speed", "parity"], default=["speed", "parity"])
    parser.add_argument("--warmup-seconds", type=float, default=30.0, help="of sample.wav, each pipeline once")
    parser.add_argument(
        "--embedding-batch-size",
        type=int,
        nargs="+",
        default=[None],
        help="ours only, tried in turn until the warm-up runs (default: the folder's, which pyannote's uses)",
    )
    parser.add_argument(
        "--segmentation-batch-size", type=int, help="ours only (default: the folder's, which pyannote's uses)"
    )
    parser.add_argument("--out", type=Path, default=Path("diarization.json"))
    parser.add_argument("--append", action="store_true", help="keep the recordings (and parts) already in --out")
    args = parser.parse_args()
    if not import_pyannote_audio():
        raise SystemExit("this benchmark needs pyannote.audio 4.0.7")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def log(message: str) -> None:
        print(message, flush=True)

    results = environment(args)
    previous = json.loads(args.out.read_text()) if args.append and args.out.is_file() else {}
    results["recordings"] = previous.get("recordings", [])
    results["warmups"] = previous.get("warmups", [])

    def save(entry: dict | None = None) -> None:
        others = [r for r in results["recordings"] if entry is None or r["minutes"] != entry["minutes"]]
        results["recordings"] = sorted(others + ([entry] if entry else []), key=lambda r: r["minutes"])
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = source_folder(args.clustering, folder / "source", args.segmentation, args.embedding)
        parts, theirs = pipelines(source, folder / "ours", args.embedding_batch_size[0])
        log(f"{results['device']}: MLX {results['mlx_device']} ({results['mlx_gpu_backend']}), torch {CUDA=}")
        ours, warmup = warm_up_ours(
            parts, theirs, args.warmup_seconds, args.embedding_batch_size, log, args.segmentation_batch_size
        )
        results["config"] = {"ours": ours.config.model_dump(), "pyannote": parts.config.model_dump()}
        results["warmups"].append({"minutes": args.minutes, "parts": args.parts, **warmup})
        save()
        for minutes in args.minutes:
            entry = next((dict(r) for r in results["recordings"] if r["minutes"] == minutes), {})
            measure(ours, theirs, minutes, folder, args.parts, entry, save, log)
    print(table(results["recordings"]))


if __name__ == "__main__":
    main()
