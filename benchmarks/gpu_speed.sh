#!/usr/bin/env bash
# On a CUDA machine (the device tool's H100/H200): segmentation speed and memory (benchmarks/speed.py) for the
# issue #15 rows, the SincNet part-size and LSTM tile sweeps, and the WeSpeaker conv2d failure
# (benchmarks/conv2d_oom.py) with the runtime's workaround, its checks and speed.
# Expects what benchmarks/gpu_diarization.sh expects ($D: wheels/, segmentation-3.0.bin, seg-2022.bin, sample.wav;
# /tmp: the mlx-cuda-13 wheel's two parts and wespeaker.ckpt, carried in earlier calls); runs this checkout's code.
# In calls of under 10 minutes each: `gpu_speed.sh 1` (the issue's segmentation rows), `2` (the LSTM tile sweep, segmentation-3.0),
# `3` (embeddings: the conv2d failure, the unfolded product at its shapes, MLX's conv2d's speed), `4` (checks and diarization on the GPU),
# `5` (the custom kernels against MLX's operations, the LSTM kernel's sweep, SincNet's part size), `6` (the WeSpeaker convolution kernel:
# its comparisons and timings, the WeSpeaker build's checks through it, embedding speed by route).
set -u
D=${D:-.device/diar/c}
OUT=${OUT:-/tmp/out}
. "$(dirname "$0")/gpu_setup.sh" || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
speed() { timeout 240 python3 benchmarks/speed.py "$@" 2>&1 | grep --line-buffered -v -i "torchcodec\|warnings.warn\|^ \|^{\|^}"; }
if [ "${1:-1}" = 1 ]; then
echo "== 2022 model, 1 h through speech detection at 1024 against pyannote's VoiceActivityDetection, raw windows, profile"
speed --checkpoint $D/seg-2022.bin --batches 1 32 256 1024 --minutes 60 --pipeline-batch 1024 --profile 1024 --out $OUT/speed_2022_b1024.json
echo "== the same at 32 against pyannote's pipeline, then against PyTorch in our windowing"
speed --checkpoint $D/seg-2022.bin --batches 32 --minutes 60 --pipeline-batch 32 --out $OUT/speed_2022_b32.json
speed --checkpoint $D/seg-2022.bin --batches 32 --minutes 60 --pipeline-batch 32 --torch-in-our-windowing --out $OUT/speed_2022_b32_ours.json
exit
fi
if [ "$1" = 2 ]; then
echo "== LSTM tile (raw windows: time and peak memory)"
# results/h200_sweeps.json also holds chunk_* rows: SincNet parts then queued together, an earlier code;
# part 5 measures the parts as they run now.
for t in 4 8 16; do
  MLX_SEGMENTATION_LSTM_TILE=$t speed --checkpoint $D/seg-2022.bin --batches 1 32 256 1024 --minutes 0 --out /tmp/tile_$t.json
done
python3 -c "import json,sys; print(json.dumps({f: json.load(open(f'/tmp/{f}.json'))['windows'] for f in sys.argv[1:]}, indent=1))" \
  tile_4 tile_8 tile_16 > $OUT/sweeps.json
echo "== segmentation-3.0, 1 h at 1024"
speed --checkpoint $D/segmentation-3.0.bin --batches 32 256 1024 --minutes 60 --pipeline-batch 1024 --out $OUT/speed_30_b1024.json
exit
fi
if [ "$1" = 3 ]; then
echo "== WeSpeaker: MLX's conv2d at the failing shapes (each length in its own process), then the unfolded product"
for s in 3 10; do
  timeout 120 python3 benchmarks/conv2d_oom.py --checkpoint /tmp/wespeaker.ckpt --seconds $s --batches 1 2 4 8 32 128 --route conv2d --out $OUT/conv2d_oom_$s.json 2>&1 | grep -v Traceback | cut -c1-400 | tail -8
done
timeout 150 python3 benchmarks/conv2d_oom.py --checkpoint /tmp/wespeaker.ckpt --seconds 3 10 --batches 1 2 4 8 32 128 --route matmul --out $OUT/conv2d_matmul.json 2>&1 | cut -c1-300 | tail -14
echo "== embedding speed with MLX's conv2d (the runtime's route, its checks and speed: part 6)"
MLX_SEGMENTATION_CONV=conv2d timeout 100 python3 benchmarks/embedding_speed.py --checkpoint /tmp/wespeaker.ckpt --seconds 10 --batches 1 8 32 --out $OUT/embedding_speed_conv2d.json 2>&1 | grep -v -i "torchcodec\|warnings.warn" | cut -c1-300
exit
fi
if [ "$1" = 4 ]; then
echo "== segmentation models' builds with their checks, MLX on the GPU"
for ck in seg-2022.bin segmentation-3.0.bin; do
  timeout 150 python3 -m converter build --checkpoint $D/$ck --out /tmp/m_$ck --force > $OUT/checks_$ck.txt 2>&1; echo "$ck: exit $?"; tail -4 $OUT/checks_$ck.txt
done
echo "== diarization of 1 h against pyannote.audio's SpeakerDiarization (community-1 parameters)"
timeout 400 python3 benchmarks/diarization.py --segmentation $D/segmentation-3.0.bin --embedding /tmp/wespeaker.ckpt \
  --minutes 60 --out $OUT/diarization.json 2>&1 | grep --line-buffered -v -i "torchcodec\|warnings.warn" | tail -40
fi
if [ "$1" = 5 ]; then
echo "== the custom kernels against MLX's own operations, the LSTM kernel's tiles and registers"
python3 benchmarks/gpu_kernels.py --lstm-sweep
echo "== SincNet part sizes at batch 1024 (raw windows: time and peak memory)"
for c in 4194304 16777216 1073741824; do
  speed --checkpoint $D/seg-2022.bin --batches 32 1024 --minutes 0 --sincnet-chunk-samples $c --out /tmp/parts_$c.json
done
python3 -c "import json,sys; print(json.dumps({c: json.load(open(f'/tmp/parts_{c}.json'))['windows'] for c in sys.argv[1:]}, indent=1))" \
  4194304 16777216 1073741824 > $OUT/sincnet_parts.json
fi
if [ "$1" = 6 ]; then
echo "== the custom kernels against MLX's own operations, the convolution kernel's timings"
python3 benchmarks/gpu_kernels.py
echo "== the ResNet through the kernel at the shapes where MLX's conv2d fails"
timeout 150 python3 benchmarks/conv2d_oom.py --checkpoint /tmp/wespeaker.ckpt --seconds 3 10 --batches 1 2 4 8 32 128 --route kernel --out $OUT/conv2d_kernel.json 2>&1 | cut -c1-300 | tail -14
echo "== WeSpeaker build with its checks on the GPU (the runtime's route, the kernel)"
timeout 200 python3 -m converter build --checkpoint /tmp/wespeaker.ckpt --out /tmp/ws --force 2>&1 | grep -v -i "torchcodec\|warnings.warn" | tail -22
echo "== embedding speed by route: the kernel (the runtime's on CUDA), the unfolded product"
timeout 150 python3 benchmarks/embedding_speed.py --checkpoint /tmp/wespeaker.ckpt --seconds 3 10 --batches 1 8 32 64 --out $OUT/embedding_speed.json 2>&1 | grep -v -i "torchcodec\|warnings.warn"
MLX_SEGMENTATION_CONV=matmul timeout 100 python3 benchmarks/embedding_speed.py --checkpoint /tmp/wespeaker.ckpt --seconds 10 --batches 1 8 32 --out $OUT/embedding_speed_matmul.json 2>&1 | grep -v -i "torchcodec\|warnings.warn" | cut -c1-300
fi
