#!/bin/bash
# C# trainer vs PyTorch reference, step by step, on the cases of align_cases.txt (issue #4).
#   reference/align.sh [-o OUTDIR] [-n DP] [CASE...]        (no CASE = every case; -l lists them)
# For each case: same model (seeded init, --seed), same token file, same optimizer, schedule and global batch;
# C# runs with --nthread_per_process=DP, PyTorch under torchrun --nproc_per_node=DP (gloo) via pytorch/torchrun.py.
# compare.py then checks every LR (relative 1e-10) and loss (absolute 1e-5) and prints a table per case.
# Writes OUTDIR/CASE/{csharp,torch}.{jsonl,log}, table.txt, curves.png (compare.py) and, when the C# trainer has
# `plot-logs`, plot.png (the project's LineChart). Exit 0 iff every selected case passes.
# CS_TRAINER: how to start the C# trainer (default: dotnet Trainer/bin/Release/net10.0/Trainer.dll).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CASES="$HERE/align_cases.txt"
OUT=/tmp/align; DP=8; LIST=0
while getopts "o:n:l" o; do case $o in o) OUT=$OPTARG;; n) DP=$OPTARG;; l) LIST=1;; *) exit 2;; esac; done
shift $((OPTIND - 1))
export CS_TRAINER="${CS_TRAINER:-dotnet $HERE/../Trainer/bin/Release/net10.0/Trainer.dll}"

COMMON=(); NAMES=(); declare -A KIND FLAGS
while read -r name kind rest; do
  case "$name" in ''|'#'*) continue;; COMMON) read -ra COMMON <<< "$kind $rest"; continue;; esac
  NAMES+=("$name"); KIND[$name]=$kind; FLAGS[$name]=$rest
done < "$CASES"
if [ $LIST = 1 ]; then printf '%s\n' "${NAMES[@]}"; exit 0; fi
SEL=("$@"); [ ${#SEL[@]} = 0 ] && SEL=("${NAMES[@]}")
for c in "${SEL[@]}"; do [ -n "${KIND[$c]:-}" ] || { echo "align.sh: unknown case '$c' (known: ${NAMES[*]})" >&2; exit 2; }; done

mkdir -p "$OUT"
tok() {  # the trainer's embedded KJV token file (GPT-2 BPE ids; uint16 for GPT-2, uint32 for LLaMA-3), read by both
  local f="$HERE/../Trainer/Data/Embedded/kjv_$1_train.bin"
  [ -s "$f" ] || { echo "align.sh: token file $f missing" >&2; exit 2; }
  echo "$f"
}

declare -A RESULT SUMMARY
fail=0; T0=$(date +%s)
for c in "${SEL[@]}"; do
  read -ra F <<< "${FLAGS[$c]}"
  data=$(tok "${KIND[$c]}") || exit 2
  echo "=== case $c (${KIND[$c]}, DP=$DP)"
  echo "    flags: ${COMMON[*]} ${F[*]} --input_bin=$data"
  t=$(date +%s)
  rm -rf "$OUT/$c"; mkdir -p "$OUT/$c"
  "$HERE/run_both.sh" -n "$DP" -o "$OUT/$c" "${KIND[$c]}" "${COMMON[@]}" "${F[@]}" --input_bin="$data" 2>&1 | tee "$OUT/$c/table.txt"
  rc=${PIPESTATUS[0]}
  if [ -s "$OUT/$c/csharp.jsonl" ] && [ -s "$OUT/$c/torch.jsonl" ]; then
    $CS_TRAINER lr plot-logs "$OUT/$c/csharp.jsonl" "$OUT/$c/torch.jsonl" --labels=C#,PyTorch \
      --title="$c" --output="$OUT/$c/plot.png" > /dev/null 2>&1 || true
  fi
  s=$(grep -E '^[0-9]+ steps compared' "$OUT/$c/table.txt" | tail -1)
  RESULT[$c]=$([ $rc = 0 ] && echo PASS || echo "FAIL($rc)")
  SUMMARY[$c]="${s:-no comparison} [$(( $(date +%s) - t )) s]"
  [ $rc = 0 ] || fail=1
done
echo
echo "=== summary (DP=$DP, $(( $(date +%s) - T0 )) s, output in $OUT)"
for c in "${SEL[@]}"; do printf '%-20s %-8s %s\n' "$c" "${RESULT[$c]}" "${SUMMARY[$c]}"; done
exit $fail
