#!/usr/bin/env bash
# On a CUDA machine (the device tool's H100/H200): benchmarks/diarization.py, MLX on the GPU against
# pyannote.audio's SpeakerDiarization on the GPU. This is what produced results/h100_diarization.json.
# Expects in $D: wheels/, these (manylinux x86_64, cp312 where compiled):
#   alembic-1.20.1 annotated_types-0.8.0 asteroid_filterbanks-0.4.0 cffi-2.1.1 colorlog-6.12.0
#   googleapis_common_protos-1.76.0 httpcore2-2.16.2 httpx2-2.16.2 julius-0.2.8 mako-1.4.3 mlx-0.32.4
#   omegaconf-2.4.0 opentelemetry_api-1.45.2 opentelemetry_exporter_http_transport-0.66b2
#   opentelemetry_exporter_otlp-1.45.2 opentelemetry_exporter_otlp_common-0.66b2
#   opentelemetry_exporter_otlp_proto_common-1.45.2 opentelemetry_exporter_otlp_proto_grpc-1.45.2
#   opentelemetry_exporter_otlp_proto_http-1.45.2 opentelemetry_proto-1.45.2 opentelemetry_sdk-1.45.2
#   opentelemetry_semantic_conventions-0.66b2 optuna-5.0.0 primePy-1.3 pyannote_audio-4.0.7 pyannote_core-6.1.0
#   pyannote_database-6.1.1 pyannote_metrics-4.2.0 pyannote_pipeline-4.1.0 pyannoteai_sdk-0.4.0 pycparser-3.12
#   pydantic-2.14.4 pydantic_core-2.50.5 pytorch_metric_learning-2.9.0 soundfile-0.14.0 soxr-1.1.0
#   sqlalchemy-2.1.9 torch_audiomentations-0.12.0 torch_pitch_shift-1.2.5 truststore-0.10.5
#   typing_extensions-4.16.0 typing_inspection-0.4.5 tzdata-2026.6
# protobuf-*.whl (installed only if pyannote's telemetry does not import with the machine's own; it did import),
# segmentation-3.0.bin, sample.wav (and .rttm), and wt/ (this repository's mlx_segmentation, checks, converter, benchmarks/diarization.py,
# tests/pipeline_sources.py and tests/plda_fixture.py); in /tmp: the mlx-cuda-13 0.32.4 wheel in two parts
# (split -b 58m, carried in earlier calls, over the 64 MiB a call carries) and wespeaker.ckpt
# (tests/make_fixtures.py's seeded "wespeaker" fixture).
# (The run behind the committed log piped the output through grep -v to drop pyannote's torchcodec warning.)
set -u
D=${D:-.device/diar/c}
OUT=${OUT:-/tmp/out}
. "$(dirname "$0")/gpu_setup.sh" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
timeout 560 python3 "$D"/wt/benchmarks/diarization.py --segmentation "$D"/segmentation-3.0.bin \
  --embedding /tmp/wespeaker.ckpt --minutes 5 60 --out /tmp/diar.json 2>&1 | tee "$OUT"/log1.txt
cp /tmp/diar.json "$OUT"/
