#!/usr/bin/env bash
# On a CUDA machine (the device tool's H100/H200): parity checks with MLX on the GPU, the TF32 and
# kernel comparisons, and the speed benchmark. Expects in $D the carried wheels (mlx, mlx-cuda-13
# in two parts, pydantic, soundfile, soxr and what they need), the 2022 checkpoint and sample.wav.
set -u
D=${D:-.device}
OUT=${OUT:-/tmp/out}
cat /tmp/mlxcuda.part.aa "$D"/partB/mlxcuda.part.ab > /tmp/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$D"/wheels/*.whl /tmp/mlx_cuda_13-*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYANNOTE_SAMPLE_WAV=$D/sample.wav PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import mlx.core as mx, torch; print('mlx', mx.__version__, mx.default_device(), 'cuda', mx.cuda.is_available(), 'torch', torch.__version__)"
CK=$D/pytorch_model.bin
echo "== build + checks, MLX on the GPU (TF32 off, LSTM kernel)"
python3 -m converter build --checkpoint "$CK" --out /tmp/m --no-checks > /dev/null && python3 -m converter check /tmp/m --checkpoint "$CK" > "$OUT"/checks_gpu.txt 2>&1; echo "exit $?"; cat "$OUT"/checks_gpu.txt | tail -45
cp /tmp/m/checks.json "$OUT"/checks_gpu.json 2>/dev/null
echo "== the same with MLX_ENABLE_TF32=1"
MLX_ENABLE_TF32=1 python3 -m converter check /tmp/m --checkpoint "$CK" > "$OUT"/checks_gpu_tf32.txt 2>&1; echo "exit $?"; grep -v "non-zero" "$OUT"/checks_gpu_tf32.txt | tail -40
echo "== the same with the portable LSTM loop"
MLX_SEGMENTATION_LSTM_KERNEL=0 python3 -m converter check /tmp/m --checkpoint "$CK" > "$OUT"/checks_gpu_portable.txt 2>&1; echo "exit $?"; tail -18 "$OUT"/checks_gpu_portable.txt
echo "== speed (one run per whole-recording batch size; each also times raw windows and profiles MLX's stages)"
for b in 1024 256 32; do
  python3 benchmarks/speed.py --checkpoint "$CK" --batches 1 8 32 256 1024 --minutes 60 --pipeline-batch $b --profile $b --out "$OUT"/speed_gpu_b$b.json | head -8
done
MLX_SEGMENTATION_LSTM_KERNEL=0 python3 benchmarks/speed.py --checkpoint "$CK" --batches 32 1024 --minutes 0 --out "$OUT"/speed_gpu_portable.json | head -3
echo "== float16 / bfloat16 speed (MLX; PyTorch stays float32)"
for dt in float16 bfloat16; do
  python3 benchmarks/speed.py --checkpoint "$CK" --batches 1 32 256 1024 --minutes 60 --pipeline-batch 1024 --dtype $dt --out "$OUT"/speed_gpu_$dt.json | head -6
done
# Embeddings: needs $D/wespeaker.ckpt (tests/make_fixtures.py), sample.rttm beside sample.wav, and
# torchaudio (its 2.11.0 wheel matches the machine's torch 2.11.0+cu130).
echo "== WeSpeaker build + checks, and embedding speed"
python3 -m converter build --checkpoint "$D"/wespeaker.ckpt --out /tmp/ws --force | tail -20
python3 benchmarks/embedding_speed.py --checkpoint "$D"/wespeaker.ckpt --seconds 3 10 --batches 1 2 8 32 --out "$OUT"/embedding_speed_gpu.json
