#!/usr/bin/env bash
# Apple silicon: every speed benchmark in one command, then the markdown tables of its results.
#
#     pip install -e '.[dev]'
#     bash benchmarks/mac.sh
#
# Run from the repository root. MLX runs on Metal, PyTorch on "mps" (float32; BENCH_TORCH_DEVICE=cpu
# to compare against PyTorch on the CPU instead). Writes benchmarks/results/mac_speed_batch{1024,256,32}.json
# (benchmarks/speed.py, the 2022 segmentation model as in the H100 tables), mac_embedding_speed.json
# (benchmarks/embedding_speed.py, tests/make_fixtures.py's seeded WeSpeaker, as on the H100) and
# mac_diarization.json (benchmarks/diarization.py: segmentation-3.0 and that WeSpeaker), and ends with
# `python benchmarks/tables.py --device-results mac`, the tables to paste into docs/speed.md.
# The embedding and diarization steps are skipped with a message if they fail (missing inputs, say).
# MINUTES (default 60) sets the length of the whole-recording runs; BATCHES (raw windows, default
# "1 8 32 256 1024"), PIPELINE_BATCHES (default "1024 256 32") and DIARIZATION_MINUTES (default "5 $MINUTES")
# shorten a trial run. Never yet run on a Mac.
set -euo pipefail
PY=${PYTHON:-python}
MINUTES=${MINUTES:-60}
BATCHES=${BATCHES:-1 8 32 256 1024}
PIPELINE_BATCHES=${PIPELINE_BATCHES:-1024 256 32}
DIARIZATION_MINUTES=${DIARIZATION_MINUTES:-5 $MINUTES}
RESULTS=benchmarks/results
WORK=$(mktemp -d)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

[ -f benchmarks/tables.py ] || { echo "run from the repository root" >&2; exit 1; }
rm -f $RESULTS/mac_*.json  # this script's own results of an earlier run
[ "$(uname -s)" = Darwin ] || echo "warning: not macOS; the results are still named mac_*" >&2
sysctl -n machdep.cpu.brand_string 2>/dev/null || uname -m
$PY -c "import mlx_segmentation, mlx.core as mx, torch
print('MLX', mx.__version__, mx.default_device(), 'Metal', mx.metal.is_available(), '| PyTorch', torch.__version__,
      'MPS', torch.backends.mps.is_available())"

# The recipes' pinned source checkpoints, from the converter's cache (fetched once, as `converter build` does).
checkpoint_of() {
  $PY - "$1" <<'EOF'
import sys
from converter.recipe import load_recipes
from converter.sources import fetch_source
(recipe,) = [r for r in load_recipes() if r.name == sys.argv[1]]
print(fetch_source(recipe, log=lambda message: print(message, file=sys.stderr)))
EOF
}
SEGMENTATION=$(checkpoint_of segmentation)
SEGMENTATION_3=$(checkpoint_of segmentation-3.0)

echo "== segmentation: raw windows and $MINUTES minutes through speech detection, one run per batch size"
for b in $PIPELINE_BATCHES; do
  # shellcheck disable=SC2086
  $PY benchmarks/speed.py --checkpoint "$SEGMENTATION" --batches $BATCHES --minutes "$MINUTES" \
    --pipeline-batch $b --out $RESULTS/mac_speed_batch$b.json > "$WORK/speed_$b.log"
  grep -E "^batch|recording:|against float64" "$WORK/speed_$b.log"
done

echo "== speaker embeddings (the seeded WeSpeaker fixture)"
WESPEAKER="$WORK/wespeaker.ckpt"
if $PY - "$WESPEAKER" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "tests")
from make_fixtures import make_fixture

make_fixture("wespeaker", Path(sys.argv[1]))
EOF
then
  $PY benchmarks/embedding_speed.py --checkpoint "$WESPEAKER" --seconds 3 10 --batches 1 2 8 32 \
    --out $RESULTS/mac_embedding_speed.json > "$WORK/embedding.log" || echo "embedding_speed.py failed: $WORK/embedding.log"
  echo "== speaker diarization, ours against pyannote.audio's ($DIARIZATION_MINUTES minutes)"
  # shellcheck disable=SC2086
  $PY benchmarks/diarization.py --segmentation "$SEGMENTATION_3" --embedding "$WESPEAKER" --minutes $DIARIZATION_MINUTES \
    --out $RESULTS/mac_diarization.json || echo "diarization.py failed; its table is left out"
else
  echo "could not make the WeSpeaker fixture: embedding and diarization skipped"
fi

echo
echo "== tables (benchmarks/tables.py --device-results mac)"
echo
$PY benchmarks/tables.py --device-results mac
