#!/usr/bin/env bash
# On a CUDA machine (the device tool's H100/H200): benchmarks/diarization_batches.py, our MLX pipeline's batch sizes on
# one hour of meeting, pyannote.audio's SpeakerDiarization once as the reference, the clustering/reconstruction
# profile and the fastest setting's parity check. This is what produced results/h100_diarization_batches.json; then,
# on the same warm machine, MLX_ENABLE_TF32=1 SETTINGS="256x64 32x32" PYANNOTE_BATCHES=" " TIMEOUT=400 DEADLINE=330
# produced results/h100_diarization_batches_tf32.json (ours with TF32 matrix products; pyannote still exact float32).
# Expects what benchmarks/gpu_diarization.sh expects ($D: wheels/, segmentation-3.0.bin, sample.wav, wt/ with this
# repository's code; /tmp: the mlx-cuda-13 wheel's two parts and wespeaker.ckpt, carried in earlier calls).
set -u
D=${D:-.device/diar/c}
OUT=${OUT:-/tmp/out}
. "$(dirname "$0")/gpu_setup.sh" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc
timeout ${TIMEOUT:-490} python3 "$D"/wt/benchmarks/diarization_batches.py --segmentation "$D"/segmentation-3.0.bin \
  --embedding /tmp/wespeaker.ckpt --minutes 60 --settings ${SETTINGS:-32x32 256x32 1024x32 256x64 256x128 1024x128} \
  --repeats ${REPEATS:-2} --deadline ${DEADLINE:-440} --pyannote-batches ${PYANNOTE_BATCHES:-256x128} \
  --out /tmp/batches.json 2>&1 | grep --line-buffered -v -i "torchcodec\|warnings.warn\|libtorchcodec" | tee "$OUT"/log.txt
cp /tmp/batches.json "$OUT"/
