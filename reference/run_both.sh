#!/bin/bash
# Run the C# trainer and the PyTorch reference with the same flags, then compare their --log_json files.
#   reference/run_both.sh [-n DP] [-o OUTDIR] gpt2|llama3 --flag=value ...
# DP > 1: C# gets --nthread_per_process=DP, PyTorch runs under torchrun --nproc_per_node=DP (gloo / nccl).
# CS_TRAINER: how to start the C# trainer (default: dotnet Trainer/bin/Release/net10.0/Trainer.dll).
# Extra compare.py options via COMPARE_OPTS (e.g. "--loss-atol=1e-4"). Exit status = compare.py's.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DP=1; OUT=/tmp/run_both
while getopts "n:o:" o; do case $o in n) DP=$OPTARG;; o) OUT=$OPTARG;; *) exit 2;; esac; done
shift $((OPTIND - 1))
KIND="$1"; shift
case "$KIND" in gpt2|llama3) ;; *) echo "first argument: gpt2 or llama3" >&2; exit 2;; esac
CS="${CS_TRAINER:-dotnet $HERE/../Trainer/bin/Release/net10.0/Trainer.dll}"
mkdir -p "$OUT"
echo "C#:      $CS $* --nthread_per_process=$DP --noprogress"
t0=$(date +%s)
$CS "$@" --nthread_per_process=$DP --noprogress --log_json="$OUT/csharp.jsonl" > "$OUT/csharp.log" 2>&1 || { tail -5 "$OUT/csharp.log"; exit 1; }
t1=$(date +%s)
if [ "$DP" -gt 1 ]; then
  /usr/bin/python3 "$HERE/pytorch/torchrun.py" --nproc_per_node=$DP "$HERE/pytorch/$KIND.py" "$@" --log_json="$OUT/torch.jsonl" > "$OUT/torch.log" 2>&1 || { tail -5 "$OUT/torch.log"; exit 1; }
else
  /usr/bin/python3 "$HERE/pytorch/$KIND.py" "$@" --log_json="$OUT/torch.jsonl" > "$OUT/torch.log" 2>&1 || { tail -5 "$OUT/torch.log"; exit 1; }
fi
t2=$(date +%s)
echo "wall: C# $((t1 - t0)) s, PyTorch $((t2 - t1)) s; logs in $OUT"
/usr/bin/python3 "$HERE/compare.py" "$OUT/csharp.jsonl" "$OUT/torch.jsonl" --labels=csharp,torch --plot="$OUT/curves.png" ${COMPARE_OPTS:-}
