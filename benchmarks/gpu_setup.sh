# Sourced by benchmarks/gpu_diarization*.sh on the CUDA machine, with D set: installs the carried wheels into
# /tmp/site once per machine (the mlx-cuda-13 wheel from its two parts in /tmp, checked by sha256) and sets
# PYTHONPATH and the environment both benchmarks run in.
WHEEL=/tmp/mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
if [ ! -f /tmp/site/.done ]; then
  cat /tmp/mlxcuda.part.aa /tmp/mlxcuda.part.ab > $WHEEL
  echo "94cb48fba73e5ee39467e51c35c51c691123359ca17bafd1a24cf92ad6732bee  $WHEEL" | sha256sum -c || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$D"/wheels/*.whl $WHEEL || exit 1
  touch /tmp/site/.done
fi
export PYTHONPATH=/tmp/site:$PWD/$D/wt PYANNOTE_SAMPLE_WAV=$PWD/$D/sample.wav PYTHONUNBUFFERED=1 PYANNOTE_METRICS_ENABLED=0
if ! python3 -c "import pyannote.audio.telemetry.metrics" 2>/tmp/telemetry.err; then
  tail -3 /tmp/telemetry.err
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$D"/protobuf-*.whl
fi
