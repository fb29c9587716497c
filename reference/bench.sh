#!/bin/bash
# Throughput of the C# trainer vs the PyTorch reference on this machine, same configuration, in one run:
#   reference/bench.sh [-o OUTDIR] [-s STEPS] [MODEL...]      (default: gpt2-tiny llama3-tiny, 8 steps)
# Per model: single process (B=8, T=64, 512 tokens/step, --num_threads=2 on both) and DP=8 (B=1, T=64, 512 tokens/step;
# C# --nthread_per_process=8, PyTorch torchrun x8 gloo; default threads: 1 per rank on 2 cores in both).
# tok/s = tokens of steps 2..N / their summed step time (step 1 = warm-up excluded), from each --log_json.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT=/tmp/bench; STEPS=8
while getopts "o:s:" o; do case $o in o) OUT=$OPTARG;; s) STEPS=$OPTARG;; *) exit 2;; esac; done
shift $((OPTIND - 1))
MODELS=("$@"); [ ${#MODELS[@]} = 0 ] && MODELS=(gpt2-tiny llama3-tiny)
CS="${CS_TRAINER:-dotnet $HERE/../Trainer/bin/Release/net10.0/Trainer.dll}"
mkdir -p "$OUT"
toks() { /usr/bin/python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][1:]
ms = sum(x["ms"] for x in r); print(f"{512 * len(r) / (ms / 1000):.0f}")' "$1"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s %-6s %12s %12s %8s   %s\n' model mode "C# tok/s" "torch tok/s" "C#/torch" "wall C# / torch (s, incl. start-up)"
for m in "${MODELS[@]}"; do
  kind=${m%%-*}
  data="$HERE/../Trainer/Data/Embedded/kjv_${kind}_train.bin"
  common=(--model="$m" --seed=42 --input_bin="$data" --sequence_length=64 --total_batch_size=512 --num_iteration="$STEPS"
          --learning_rate=1e-3 --optimizer=adamw --weight_decay=0.1 --lr_scheduler=cosine --warmup_steps=2)
  for mode in single dp8; do
    o="$OUT/$m-$mode"; mkdir -p "$o"
    if [ $mode = single ]; then
      t0=$(date +%s.%N); $CS "${common[@]}" --batch_size=8 --num_threads=2 --noprogress --log_json="$o/csharp.jsonl" > "$o/csharp.log" 2>&1
      t1=$(date +%s.%N); /usr/bin/python3 "$HERE/pytorch/$kind.py" "${common[@]}" --batch_size=8 --num_threads=2 --log_json="$o/torch.jsonl" > "$o/torch.log" 2>&1
    else
      t0=$(date +%s.%N); $CS "${common[@]}" --batch_size=1 --nthread_per_process=8 --noprogress --log_json="$o/csharp.jsonl" > "$o/csharp.log" 2>&1
      t1=$(date +%s.%N); /usr/bin/python3 "$HERE/pytorch/torchrun.py" --nproc_per_node=8 "$HERE/pytorch/$kind.py" "${common[@]}" --batch_size=1 --log_json="$o/torch.jsonl" > "$o/torch.log" 2>&1
    fi
    t2=$(date +%s.%N)
    a=$(toks "$o/csharp.jsonl"); b=$(toks "$o/torch.jsonl")
    printf '%-12s %-6s %12s %12s %8s   %.1f / %.1f\n' "$m" "$mode" "$a" "$b" "$(/usr/bin/python3 -c "print(f'{$a/$b:.2f}x')")" \
      "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)"
  done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
