#!/bin/bash
# C# trainer vs PyTorch reference, step by step, on the cases of align_cases.txt (issues #4, #14).
#   reference/align.sh [-o OUTDIR] [-n DP] [CASE...]        (no CASE = every case; -l lists them, -c lists the CI ones)
# A case line is `NAME MODEL [TAG...] FLAGS...`; tags (words before the first --flag):
#   ci         the case belongs to the CI subset (Tests/Alignment runs only those)
#   dp=N       data-parallel degree of this case (default: -n DP, 8)
#   golden=ID  PyTorch 1.13 cannot run this case (PyTorch 2.x can): the C# LRs and momenta are compared with the
#              golden PyTorch 2.11 trace ID of Tests/Data/golden/pytorch-2.11/lr_traces.jsonl.gz instead (no loss)
# For each case: same model (seeded init, --seed), same token file, same optimizer, schedule and global batch;
# C# runs with --nthread_per_process=DP, PyTorch under torchrun --nproc_per_node=DP (gloo) via pytorch/torchrun.py
# (DP 1: a single process). compare.py then checks every LR and logged momentum/beta1 (relative 1e-10) and loss
# (absolute 1e-5) and prints a table per case.
# Writes OUTDIR/CASE/{csharp,torch}.{jsonl,log}, table.txt, curves.png (compare.py) and, when the C# trainer has
# `plot-logs`, plot.png (drawn with ScottPlot). Exit 0 iff every selected case passes.
# CS_TRAINER: how to start the C# trainer (default: dotnet Trainer/bin/Release/net10.0/Trainer.dll).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CASES="$HERE/align_cases.txt"
GOLDEN="$HERE/../Tests/Data/golden/pytorch-2.11/lr_traces.jsonl.gz"
OUT=/tmp/align; DP=8; LIST=0
while getopts "o:n:lc" o; do case $o in o) OUT=$OPTARG;; n) DP=$OPTARG;; l) LIST=1;; c) LIST=2;; *) exit 2;; esac; done
shift $((OPTIND - 1))
export CS_TRAINER="${CS_TRAINER:-dotnet $HERE/../Trainer/bin/Release/net10.0/Trainer.dll}"

COMMON=(); NAMES=(); CI=(); declare -A KIND FLAGS CASEDP GOLD
while read -r name kind rest; do
  case "$name" in ''|'#'*) continue;; COMMON) read -ra COMMON <<< "$kind $rest"; continue;; esac
  [ -z "${KIND[$name]:-}" ] || { echo "align.sh: case '$name' defined twice in $CASES" >&2; exit 2; }
  read -ra W <<< "$rest"; i=0
  while [ $i -lt ${#W[@]} ] && [[ "${W[$i]}" != --* ]]; do
    case "${W[$i]}" in
      ci) CI+=("$name");;
      dp=[1-9]*) CASEDP[$name]=${W[$i]#dp=};;
      golden=?*) GOLD[$name]=${W[$i]#golden=};;
      *) echo "align.sh: case '$name': unknown tag '${W[$i]}' (ci, dp=N, golden=ID)" >&2; exit 2;;
    esac
    i=$((i + 1))
  done
  NAMES+=("$name"); KIND[$name]=$kind; FLAGS[$name]="${W[*]:$i}"
done < "$CASES"
if [ $LIST = 1 ]; then printf '%s\n' "${NAMES[@]}"; exit 0; fi
if [ $LIST = 2 ]; then printf '%s\n' "${CI[@]}"; exit 0; fi
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
# golden=ID: the C# trainer alone, its log compared with PyTorch 2.11's trace of the same schedule and base LR
golden_case() {  # OUTDIR ID MODEL-KIND DP FLAGS...
  local o=$1 id=$2 kind=$3 dp=$4; shift 4
  echo "C#:      $CS_TRAINER $* --nthread_per_process=$dp --noprogress"
  $CS_TRAINER "$@" --nthread_per_process="$dp" --noprogress --log_json="$o/csharp.jsonl" > "$o/csharp.log" 2>&1 \
    || { tail -5 "$o/csharp.log"; return 1; }
  /usr/bin/python3 "$HERE/golden_log.py" "$GOLDEN" "$id" "$@" --out="$o/torch.jsonl" || return 2
  /usr/bin/python3 "$HERE/compare.py" "$o/csharp.jsonl" "$o/torch.jsonl" --labels=csharp,torch-2.11 --no-loss --plot="$o/curves.png"
}

for c in "${SEL[@]}"; do
  read -ra F <<< "${FLAGS[$c]}"
  data=$(tok "${KIND[$c]}") || exit 2
  dp=${CASEDP[$c]:-$DP}
  echo "=== case $c (${KIND[$c]}, DP=$dp${GOLD[$c]:+, vs golden PyTorch 2.11 trace ${GOLD[$c]}})"
  echo "    flags: ${COMMON[*]} ${F[*]} --input_bin=$data"
  t=$(date +%s)
  rm -rf "$OUT/$c"; mkdir -p "$OUT/$c"
  if [ -n "${GOLD[$c]:-}" ]; then
    golden_case "$OUT/$c" "${GOLD[$c]}" "${KIND[$c]}" "$dp" "${COMMON[@]}" "${F[@]}" --input_bin="$data" 2>&1 | tee "$OUT/$c/table.txt"
  else
    "$HERE/run_both.sh" -n "$dp" -o "$OUT/$c" "${KIND[$c]}" "${COMMON[@]}" "${F[@]}" --input_bin="$data" 2>&1 | tee "$OUT/$c/table.txt"
  fi
  rc=${PIPESTATUS[0]}
  if [ -s "$OUT/$c/csharp.jsonl" ] && [ -s "$OUT/$c/torch.jsonl" ]; then
    $CS_TRAINER lr plot-logs "$OUT/$c/csharp.jsonl" "$OUT/$c/torch.jsonl" --labels=C#,PyTorch \
      --title="$c" --output="$OUT/$c/plot.png" > /dev/null 2>&1 || true
  fi
  s=$(grep -E '^[0-9]+ steps compared' "$OUT/$c/table.txt" | tail -1)
  RESULT[$c]=$([ $rc = 0 ] && echo PASS || echo "FAIL($rc)")
  SUMMARY[$c]="DP=$dp ${s:-no comparison} [$(( $(date +%s) - t )) s]"
  [ $rc = 0 ] || fail=1
done
echo
echo "=== summary ($(( $(date +%s) - T0 )) s, output in $OUT)"
for c in "${SEL[@]}"; do printf '%-26s %-8s %s\n' "$c" "${RESULT[$c]}" "${SUMMARY[$c]}"; done
exit $fail
