"""Batch sizes of our MLX diarization pipeline on one long recording, and where its numpy stages' seconds go.

    python benchmarks/diarization_batches.py --segmentation SEG.bin --embedding WESPEAKER.ckpt --minutes 60 \
        --settings 32x32 256x32 1024x32 256x64 256x128 1024x128 [--repeats 2] [--out batches.json]

Builds both pipelines as benchmarks/diarization.py does (community-1's VBx clustering by default), warms each up on
sample.wav, then on `checks.audio.long_recording(minutes * 60)`:
- SWEEP: ours once per SEGxEMB setting (segmentation_batch_size x embedding_batch_size, ours only), `--repeats`
  rounds over all settings (the first run of a setting includes whatever MLX or cuDNN prepares for new shapes);
  total and per-stage seconds and MLX's peak memory (benchmarks/diarization.py's `run_ours`); a setting that
  raises (e.g. `cudaMallocAsync ... out of memory`) is recorded with its error and not retried;
- PYANNOTE: its SpeakerDiarization once at its config's batch sizes (32, 32); each setting's last diarization is
  scored against it (pyannote.metrics DER, collar 0, overlap scored; exclusive too; RTTM identical or not);
- PROFILE: on the host CPU, the clustering (`VBxClustering.__call__`) and reconstruction
  (`diarization_from_clusters`) of the first setting's first run, step by step with manual timers (mirroring
  their code, and checked to give the same result), best of `--profile-repeats`, plus cProfile's top functions;
- PARITY: `checks.diarization.diarization_check` with the fastest setting (it runs both pipelines again);
- optionally (`--pyannote-batches SEGxEMB`): pyannote's pipeline once at other batch sizes, a separate row.
Steps that would start after `--deadline` seconds are skipped (and said so). Results go to `--out` after each.
"""

from __future__ import annotations

import os

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # as benchmarks/diarization.py, before anything imports
os.environ.setdefault("MLX_ENABLE_TF32", "0")

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import diarization as bench  # noqa: E402  (sets MLX_ENABLE_TF32=0 and the telemetry switch before MLX loads)
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402
from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402

from checks.audio import long_recording, read_mono  # noqa: E402
from checks.diarization import annotation, diarization_check, rttm  # noqa: E402
from mlx_segmentation import clustering as our_clustering  # noqa: E402
from mlx_segmentation import diarization as our_diarization  # noqa: E402

SAMPLE_RATE = bench.SAMPLE_RATE


def setting_name(segmentation: int, embedding: int) -> str:
    return f"{segmentation}x{embedding}"


def run_ours_capturing(ours, waveform: np.ndarray, capture: bool) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """benchmarks/diarization.py's `run_ours`, also returning the diarization and (if `capture`) the hooked
    artefacts (segmentations, count, embeddings, clusters)."""
    bench.reset_peak_memory()
    clock = bench.StageClock()
    steps: dict[str, Any] = {}

    def hook(step: str, artefact: Any) -> None:
        clock.mark(step)
        if capture:
            steps[step] = artefact

    diarization = ours(waveform, sample_rate=SAMPLE_RATE, hook=hook)
    bench.sync()
    end = time.perf_counter()
    result = {
        "total_seconds": round(end - clock.start, 3),
        "stages": clock.stages(end, bench.OUR_STAGES),
        "speakers": len(diarization.labels),
        **bench.peak_memory(),
    }
    return result, diarization, steps


def run_theirs_keeping(theirs, waveform: np.ndarray, uri: str) -> tuple[dict[str, Any], Any]:
    """benchmarks/diarization.py's `run_theirs`, also returning pyannote's output."""
    bench.reset_peak_memory()
    file = {"waveform": torch.from_numpy(waveform[None]), "sample_rate": SAMPLE_RATE, "uri": uri}

    def hook(step: str, artefact: Any, file: Any = None, **progress: Any) -> None:
        if not progress:
            clock.mark(step)

    clock = bench.StageClock()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = theirs.apply(file, hook=hook)
    bench.sync()
    end = time.perf_counter()
    result = {
        "total_seconds": round(end - clock.start, 3),
        "stages": clock.stages(end, bench.THEIR_STAGES),
        "speakers": len(output.speaker_diarization.labels()),
        **bench.peak_memory(),
    }
    return result, output


def score(diarization: Any, expected: Any, uri: str) -> dict[str, Any]:
    """DER (and exclusive DER) of our diarization with pyannote's output as the reference, as diarization_check."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'uem' was approximated", category=UserWarning)
        der = float(metric(expected.speaker_diarization, annotation(diarization, uri)))
        exclusive = float(metric(expected.exclusive_speaker_diarization, annotation(diarization, uri, exclusive=True)))
    return {
        "der_vs_pyannote": der,
        "exclusive_der_vs_pyannote": exclusive,
        "rttm_identical": diarization.to_rttm(uri) == rttm(expected.speaker_diarization),
        "speakers": len(diarization.labels),
        "reference_speakers": len(expected.speaker_diarization.labels()),
    }


class Timers:
    """Best-of-n seconds per named part."""

    def __init__(self) -> None:
        self.best: dict[str, float] = {}
        self.current: dict[str, float] = {}

    def time(self, name: str, function, *args, **kwargs):
        start = time.perf_counter()
        value = function(*args, **kwargs)
        self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - start
        return value

    def end_round(self) -> None:
        for name, seconds in self.current.items():
            self.best[name] = min(self.best.get(name, np.inf), seconds)
        self.current = {}

    def rounded(self) -> dict[str, float]:
        return {name: round(seconds, 5) for name, seconds in self.best.items()}


def vbx_timed(features, phi, gamma, Fa, Fb, max_iters, t: Timers, epsilon: float = 1e-4):
    """mlx_segmentation.vbx.vbx with its iterations counted (the same arithmetic)."""
    from scipy.special import logsumexp

    dimension = features.shape[1]
    pi = np.ones(gamma.shape[1]) / gamma.shape[1]
    G = -0.5 * (np.sum(features**2, axis=1, keepdims=True) + dimension * np.log(2 * np.pi))
    V = np.sqrt(phi)
    rho = features * V
    previous_elbo = None
    iterations = 0
    for _ in range(max_iters):
        iterations += 1
        invL = 1.0 / (1 + Fa / Fb * gamma.sum(axis=0, keepdims=True).T * phi)
        alpha = Fa / Fb * invL * gamma.T.dot(rho)
        log_p_ = Fa * (rho.dot(alpha.T) - 0.5 * (invL + alpha**2).dot(phi) + G)
        lpi = np.log(pi + 1e-8)
        log_p_x = logsumexp(log_p_ + lpi, axis=-1)
        log_pX_ = np.sum(log_p_x, axis=0)
        gamma = np.exp(log_p_ + lpi - log_p_x[:, None])
        pi = np.sum(gamma, axis=0)
        pi = pi / pi.sum()
        elbo = log_pX_ + Fb * 0.5 * np.sum(np.log(invL) - invL - alpha**2 + 1)
        if previous_elbo is not None and elbo - previous_elbo < epsilon:
            break
        previous_elbo = elbo
    return gamma, pi, iterations


def vbx_clustering_timed(clustering, embeddings: np.ndarray, segmentations: np.ndarray, t: Timers) -> dict[str, Any]:
    """`VBxClustering.__call__` with no speaker bounds, step by step (its code, with timers)."""
    from scipy.special import softmax

    train, _, _ = t.time("filter_embeddings", our_clustering.filter_embeddings, embeddings, segmentations)
    normed = t.time("l2_normalise", lambda: train / np.linalg.norm(train, axis=1, keepdims=True))
    dendrogram = t.time("ahc_linkage_centroid", linkage, normed, method="centroid", metric="euclidean")
    ahc = t.time("ahc_fcluster", lambda: fcluster(dendrogram, clustering.threshold, criterion="distance") - 1)
    _, ahc = t.time("ahc_unique", np.unique, ahc, return_inverse=True)
    features = t.time("plda_transform", clustering.plda, train)

    def init():
        qinit = np.zeros((len(ahc), ahc.max() + 1))
        qinit[range(len(ahc)), ahc.astype(int)] = 1.0
        return softmax(qinit * 7.0, axis=1)

    qinit = t.time("vbx_init", init)
    q, sp, iterations = t.time(
        "vbx_iterations",
        vbx_timed,
        features,
        clustering.plda.phi,
        qinit,
        clustering.Fa,
        clustering.Fb,
        clustering.max_iters,
        t,
    )
    dimension = embeddings.shape[2]

    def centroids_of():
        W = q[:, sp > 1e-7]
        return W.T @ train.reshape(-1, dimension) / W.sum(0, keepdims=True).T

    centroids = t.time("centroids", centroids_of)
    soft = t.time("similarity_cdist", our_clustering.similarity, embeddings, centroids, clustering.metric)

    def mask_inactive():
        inactive = segmentations.sum(1) == 0
        soft[inactive] = soft.min() - 1.0

    t.time("mask_inactive", mask_inactive)
    hard = t.time("constrained_argmax_hungarian", our_clustering.constrained_argmax, soft)
    return {
        "hard": hard,
        "centroids": centroids,
        "train_embeddings": len(train),
        "ahc_clusters": int(ahc.max() + 1),
        "vbx_iterations": iterations,
        "vbx_speakers_kept": int(np.sum(sp > 1e-7)),
    }


def reconstruction_timed(steps: dict[str, Any], clusters, t: Timers) -> Any:
    """`diarization_from_clusters` (no speaker bounds, min_duration_off 0 as community-1), step by step."""
    segmentations = steps["segmentation"]
    chunks, count_in = segmentations.chunks, steps["speaker_counting"]
    scores, binarized = segmentations.scores, segmentations.binarized
    FrameScores = our_diarization.FrameScores
    count = t.time("count_cap", lambda: FrameScores(np.minimum(count_in.data, np.inf).astype(np.int8), count_in.frames))

    def hard_of():
        hard = clusters.hard.copy()
        hard[np.sum(binarized, axis=1) == 0] = -2
        return hard

    hard = t.time("inactive_to_-2", hard_of)
    discrete = t.time("reconstruct", our_diarization.reconstruct, scores, chunks, hard, count)
    tracks = t.time("to_annotation", our_diarization.to_annotation, discrete, 0.0)
    one = t.time("exclusive_count", lambda: FrameScores(np.minimum(count.data, 1).astype(np.int8), count.frames))
    exclusive = t.time("exclusive_reconstruct", our_diarization.reconstruct, scores, chunks, hard, one)
    exclusive_tracks = t.time("exclusive_to_annotation", our_diarization.to_annotation, exclusive, 0.0)
    return len(tracks), len(exclusive_tracks)


def profile(ours, steps: dict[str, Any], repeats: int, log) -> dict[str, Any]:
    """Where the clustering and reconstruction seconds go, on the host CPU, with the hooked artefacts."""
    embeddings = steps["embeddings"]
    binarized = steps["segmentation"].binarized
    clustering = ours.clustering
    bounds = our_diarization.set_num_speakers(None, None, None)
    result: dict[str, Any] = {
        "embeddings_shape": list(embeddings.shape),
        "binarized_shape": list(binarized.shape),
    }

    def whole_clustering():
        return clustering(embeddings.copy(), binarized, *bounds)

    def whole_reconstruction(clusters):
        s = steps["segmentation"]
        return our_diarization.diarization_from_clusters(
            s.scores, s.chunks, steps["speaker_counting"], clusters, *bounds[1:], ours.config.min_duration_off,
            binarized=s.binarized,
        )  # fmt: skip

    whole = []
    for _ in range(repeats):
        start = time.perf_counter()
        clusters = whole_clustering()
        middle = time.perf_counter()
        whole_reconstruction(clusters)
        whole.append((middle - start, time.perf_counter() - middle))
    result["clustering_call_seconds"] = [round(a, 4) for a, _ in whole]
    result["reconstruction_call_seconds"] = [round(b, 4) for _, b in whole]

    t = Timers()
    info = {}
    for _ in range(repeats):
        info = vbx_clustering_timed(clustering, embeddings.copy(), binarized, t)
        t.end_round()
    result["clustering_parts_best_seconds"] = t.rounded()
    result["clustering_parts_sum"] = round(sum(t.best.values()), 4)
    result["clustering_same_as_call"] = bool(
        np.array_equal(info.pop("hard"), clusters.hard) and np.allclose(info.pop("centroids"), clusters.centroids)
    )
    result["clustering_info"] = info
    log(f"clustering parts (best of {repeats}): {result['clustering_parts_best_seconds']} {info}")

    t = Timers()
    for _ in range(repeats):
        tracks = reconstruction_timed(steps, clusters, t)
        t.end_round()
    result["reconstruction_parts_best_seconds"] = t.rounded()
    result["reconstruction_tracks"] = list(tracks)
    log(f"reconstruction parts (best of {repeats}): {result['reconstruction_parts_best_seconds']}")

    for name, call in (("clustering", whole_clustering), ("reconstruction", lambda: whole_reconstruction(clusters))):
        profiler = cProfile.Profile()
        profiler.enable()
        call()
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        result[f"{name}_cprofile_tottime_top15"] = text.getvalue().splitlines()
    return result


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'setting':<14} {'run':>3} {'total':>7} {'seg':>6} {'count':>6} {'embed':>6} {'clust':>6} {'recon':>6}"
        f" {'peak GiB':>8} {'DER %':>7}"
    ]
    for row in results["settings"]:
        for index, run in enumerate(row["runs"]):
            s = run["stages"]
            der = row.get("score", {}).get("der_vs_pyannote")
            lines.append(
                f"{row['name']:<14} {index + 1:>3} {run['total_seconds']:>7.2f} {s['segmentation']:>6.2f} "
                f"{s['speaker_counting']:>6.2f} {s['embeddings']:>6.2f} {s['clustering']:>6.2f} "
                f"{s['reconstruction']:>6.2f} {run['mlx_peak_bytes'] / 2**30:>8.2f} "
                f"{'' if der is None else f'{100 * der:.4f}':>7}"
            )
        if "error" in row:
            lines.append(f"{row['name']:<14} FAILED: {row['error'][:200]}")
    for row in results.get("pyannote", []):
        if "error" in row:
            lines.append(f"{'pyannote ' + row['name']:<14} FAILED: {row['error'][:200]}")
            continue
        s = row["stages"]
        lines.append(
            f"{'pyannote ' + row['name']:<14} {1:>3} {row['total_seconds']:>7.2f} {s['segmentation']:>6.2f} "
            f"{s['speaker_counting']:>6.2f} {s['embeddings']:>6.2f} {s['clustering']:>6.2f} "
            f"{s['reconstruction']:>6.2f} {row.get('torch_cuda_max_allocated_bytes', 0) / 2**30:>8.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmentation", type=Path, required=True)
    parser.add_argument("--embedding", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clustering", choices=["community-1", "3.1"], default="community-1")
    parser.add_argument("--settings", nargs="+", default=["32x32", "256x32", "1024x32", "256x64", "256x128"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile-repeats", type=int, default=3)
    parser.add_argument("--pyannote-batches", nargs="*", default=[], help="extra pyannote rows, SEGxEMB")
    parser.add_argument("--warmup-seconds", type=float, default=30.0)
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds from the start: no new step after")
    parser.add_argument("--out", type=Path, default=Path("diarization_batches.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    def left() -> float:
        return args.deadline - (time.perf_counter() - started)

    settings = [tuple(int(x) for x in s.split("x")) for s in args.settings]
    results: dict[str, Any] = {
        **bench.environment(args),
        "settings_note": "SEGxEMB: our segmentation_batch_size x embedding_batch_size (pyannote's stay 32 x 32); "
        "embeddings run embedding_batch_size windows per forward (embedding_batch_size // 3 before 2026-11-27)",
        "skipped": [],
        "settings": [],
    }

    def save() -> None:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = bench.source_folder(args.clustering, folder / "source", args.segmentation, args.embedding)
        parts, theirs = bench.pipelines(source, folder / "ours", None)
        log(f"{results['device']}: MLX {results['mlx_device']}, pipelines built")
        results["warmup"] = bench.warm_up(bench.our_pipeline(parts, None), theirs, args.warmup_seconds, log)
        save()

        waveform = long_recording(args.minutes * 60)
        wav = folder / f"recording_{args.minutes:g}min.wav"
        soundfile.write(wav, waveform, SAMPLE_RATE, subtype="FLOAT")
        waveform, _ = read_mono(wav)
        uri = wav.stem
        results["recording"] = {"minutes": args.minutes, "duration_seconds": round(len(waveform) / SAMPLE_RATE, 3)}
        log(f"recording: {results['recording']}")

        rows = {setting_name(*s): {"name": setting_name(*s), "segmentation_batch_size": s[0],
                                   "embedding_batch_size": s[1], "runs": []} for s in settings}  # fmt: skip
        results["settings"] = list(rows.values())
        diarizations: dict[str, Any] = {}
        captured: dict[str, Any] = {}
        first = setting_name(*settings[0])
        for repeat in range(args.repeats):
            for seg, emb in settings:
                name = setting_name(seg, emb)
                row = rows[name]
                if "error" in row:
                    continue
                if left() < 60:
                    results["skipped"].append(f"{name} run {repeat + 1}")
                    log(f"skipped {name} run {repeat + 1} (deadline)")
                    continue
                ours = bench.our_pipeline(parts, emb, seg)
                try:
                    run, diarization, steps = run_ours_capturing(ours, waveform, capture=name == first and not captured)
                except Exception as error:  # noqa: BLE001 (MLX raises RuntimeError on CUDA allocation failures)
                    row["error"] = f"{type(error).__name__}: {error}"[:2000]
                    row["failed_on_run"] = repeat + 1
                    log(f"{name} FAILED: {row['error'][:300]}")
                    mx.clear_cache()
                    save()
                    continue
                row["runs"].append(run)
                diarizations[name] = diarization
                if steps:
                    captured = steps
                log(f"{name} run {repeat + 1}: {run['total_seconds']} s {run['stages']} "
                    f"peak {run['mlx_peak_bytes'] / 2**30:.2f} GiB")  # fmt: skip
                save()
        for row in results["settings"]:
            if row["runs"]:
                row["best_total_seconds"] = min(r["total_seconds"] for r in row["runs"])

        their_run, expected = run_theirs_keeping(theirs, waveform, uri)
        results["pyannote"] = [{"name": "32x32", "label": "pyannote at its config's batch sizes", **their_run}]
        log(f"pyannote 32x32: {their_run['total_seconds']} s {their_run['stages']}")
        for name, diarization in diarizations.items():
            rows[name]["score"] = score(diarization, expected, uri)
            log(f"{name} vs pyannote: {rows[name]['score']}")
        save()

        if captured and left() > 30:
            ours = bench.our_pipeline(parts, None)
            results["profile"] = profile(ours, captured, args.profile_repeats, log)
            results["profile"]["host_cpu_threads"] = torch.get_num_threads()
            save()
        else:
            results["skipped"].append("profile")

        timed = [row for row in results["settings"] if row.get("best_total_seconds")]
        if timed and left() > 90:
            fastest = min(timed, key=lambda row: row["best_total_seconds"])
            ours = bench.our_pipeline(parts, fastest["embedding_batch_size"], fastest["segmentation_batch_size"])
            start = time.perf_counter()
            check = diarization_check(ours, theirs, wav)
            results["parity"] = {
                "setting": fastest["name"],
                "check_seconds": round(time.perf_counter() - start, 1),
                **check.model_dump(),
            }
            log(f"parity {fastest['name']}: {'passed' if check.passed else 'FAILED'} {check.model_dump()}")
            save()
        else:
            results["skipped"].append("parity")

        for extra in args.pyannote_batches:
            if left() < 60:
                results["skipped"].append(f"pyannote {extra}")
                continue
            seg, emb = (int(x) for x in extra.split("x"))
            theirs.segmentation_batch_size, theirs.embedding_batch_size = seg, emb
            try:
                run, output = run_theirs_keeping(theirs, waveform, uri)
            except Exception as error:  # noqa: BLE001
                results["pyannote"].append({"name": extra, "error": f"{type(error).__name__}: {error}"[:2000]})
                continue
            results["pyannote"].append(
                {"name": extra, "label": "pyannote at other batch sizes (not its config's)", **run}
            )
            log(f"pyannote {extra}: {run['total_seconds']} s {run['stages']}")
            save()
    results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    save()
    print(table(results))


if __name__ == "__main__":
    main()
