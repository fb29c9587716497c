#!/bin/bash
# Synthetic DP check of the PyTorch reference (CPU, gloo): the same global batch trained
#   (a) in one process with gradient accumulation (B=2, accumulation 8), and
#   (b) under torchrun with 8 ranks (B=2 each, accumulation 1),
# must log the same LRs (bit-equal) and losses within 1e-5. Both models. Usage:
#   reference/check_dp.sh [WORKDIR] [STEPS]        (defaults /tmp/ref-dp, 5)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY=/usr/bin/python3
W="${1:-/tmp/ref-dp}"; STEPS="${2:-5}"
mkdir -p "$W"
$PY "$HERE/pytorch/make_tokens.py" --out="$W/tok16.bin" --count=40000 --vocab=50257 --seed=1 >/dev/null
$PY "$HERE/pytorch/make_tokens.py" --out="$W/tok32.bin" --count=40000 --vocab=50257 --seed=2 --uint32 >/dev/null
rc=0
for m in gpt2 llama3; do
  tok=$W/tok16.bin; [ $m = llama3 ] && tok=$W/tok32.bin
  $PY "$HERE/pytorch/$m.py" --model=$m-tiny --seed=42 --init_only --write_llmc="$W/$m-tiny.bin" >/dev/null
  COMMON="--llmc_filepath=$W/$m-tiny.bin --input_bin=$tok --batch_size=2 --sequence_length=32 --total_batch_size=512
          --num_iteration=$STEPS --lr-scheduler=cosine --warmup-steps=2 --min-lr=1e-5 --learning_rate=1e-3
          --weight_decay=0.1 --grad_clip=1.0"
  t0=$(date +%s.%N)
  $PY "$HERE/pytorch/$m.py" $COMMON --log_json="$W/$m.single.jsonl" > "$W/$m.single.log" 2>&1
  t1=$(date +%s.%N)
  $PY "$HERE/pytorch/torchrun.py" --nproc_per_node=8 "$HERE/pytorch/$m.py" $COMMON --log_json="$W/$m.dp8.jsonl" > "$W/$m.dp8.log" 2>&1
  t2=$(date +%s.%N)
  printf '%s: single process %.1f s, torchrun x8 (gloo) %.1f s (wall, incl. start-up)\n' $m "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
  $PY "$HERE/compare.py" "$W/$m.single.jsonl" "$W/$m.dp8.jsonl" --labels=single,dp8 --loss-atol=1e-5 --lr-rtol=0 || rc=1
done
exit $rc
