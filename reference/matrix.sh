#!/bin/bash
# The parallel scenario matrix (issue #7): every layout of matrix_cases.txt x models x dtypes x schedules, each
# compared with the single-device run of the same global batch.
#   reference/matrix.sh [-o OUTDIR] [-m gpt2,llama3] [-d float32,bfloat16] [-s warmup-cosine,chained] [SCENARIO...]
#   reference/matrix.sh -l                      # list the scenarios
#   reference/matrix.sh -b mpi ...              # also run each multi-rank scenario under mpirun (MPI backend)
#   reference/matrix.sh -b hybrid ...           # ... as mpirun -np W/2 processes x --nthread_per_process=2 threads
# No SCENARIO = all of them. Per row: name, layout, max |Δloss| vs single device (tolerance 1e-5 float32, 1e-2
# bfloat16), LR check (bit-identical every step), the ZeRO twin check (bit-identical losses and LRs), tokens/s
# (mean over steps 2..N) and optimizer-state bytes per rank. Ends with `matrix: N passed, N failed`; exit 1 on any
# failure. Rows with --lora_* flags are compared with the single-device run with the same LoRA flags. Logs under
# OUTDIR (default /tmp/matrix)/MODEL-DTYPE-SCHEDULE/ID.{jsonl,log}.
# -b mpi: each scenario with --nthread_per_process=W also runs as `mpirun --oversubscribe -np W` (one rank per process,
# --nthread_per_process=1) and must match its threaded run: LRs bit-identical, loss within 1e-6 (column "mpi").
# -b hybrid: the same with W/2 processes of 2 rank threads each (threads x processes; W must be even).
# CS_TRAINER: how to start the C# trainer (default: dotnet Trainer/bin/Release/net10.0/Trainer.dll).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CASES="$HERE/matrix_cases.txt"
OUT=/tmp/matrix; MODELS=gpt2,llama3; DTYPES=float32,bfloat16; SCHEDS=warmup-cosine,chained; LIST=0; BACKEND=threads
while getopts "o:m:d:s:lb:" o; do case $o in o) OUT=$OPTARG;; m) MODELS=$OPTARG;; d) DTYPES=$OPTARG;; s) SCHEDS=$OPTARG;; l) LIST=1;; b) BACKEND=$OPTARG;; *) exit 2;; esac; done
case $BACKEND in threads) ;; mpi|hybrid) command -v mpirun >/dev/null || { echo "matrix.sh: -b mpi needs mpirun (apt-get install openmpi-bin)" >&2; exit 2; };; *) echo "matrix.sh: -b: '$BACKEND' is not threads, mpi or hybrid" >&2; exit 2;; esac
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
shift $((OPTIND - 1))
CS="${CS_TRAINER:-dotnet $HERE/../Trainer/bin/Release/net10.0/Trainer.dll}"
PY=/usr/bin/python3

# 4 layers: enough for PP 4 or PP 2 x VPP 2 chunks; TP 2/4 splits them (heads, vocabulary).
declare -A MODEL=([gpt2]=gpt2-tiny-pp [llama3]=llama3-tiny-pp)
declare -A SCHED=(
  [warmup-cosine]='--lr_scheduler=cosine --warmup_steps=3 --min_lr=1e-4'
  [chained]='--lr_schedule={"type":"ChainedScheduler","schedulers":[{"type":"StepLR","step_size":3,"gamma":0.5},{"type":"LinearLR","start_factor":0.1,"end_factor":1.0,"total_iters":8}]}'
)

COMMON=(); BASELINE=(); IDS=(); declare -A TWIN FLAGS
while read -r id twin rest; do
  case "$id" in ''|'#'*) continue;; COMMON) read -ra COMMON <<< "$twin $rest"; continue;; BASELINE) read -ra BASELINE <<< "$twin $rest"; continue;; esac
  IDS+=("$id"); TWIN[$id]=$twin; FLAGS[$id]=$rest
done < "$CASES"
if [ $LIST = 1 ]; then for i in "${IDS[@]}"; do printf '%-10s %s\n' "$i" "${FLAGS[$i]}"; done; exit 0; fi
SEL=("$@"); [ ${#SEL[@]} = 0 ] && SEL=("${IDS[@]}")
for i in "${SEL[@]}"; do [ -n "${FLAGS[$i]:-}" ] || { echo "matrix.sh: unknown scenario '$i' (known: ${IDS[*]})" >&2; exit 2; }; done
IFS=, read -ra MS <<< "$MODELS"; IFS=, read -ra DS <<< "$DTYPES"; IFS=, read -ra SS <<< "$SCHEDS"
for m in "${MS[@]}"; do [ -n "${MODEL[$m]:-}" ] || { echo "matrix.sh: -m: unknown model '$m' (gpt2, llama3)" >&2; exit 2; }; done
for d in "${DS[@]}"; do case $d in float32|bfloat16) ;; *) echo "matrix.sh: -d: '$d' is not float32 or bfloat16" >&2; exit 2;; esac; done
for s in "${SS[@]}"; do [ -n "${SCHED[$s]:-}" ] || { echo "matrix.sh: -s: unknown schedule '$s' (${!SCHED[*]})" >&2; exit 2; }; done

# run DIR NAME FLAGS...: one trainer run with --log_json; 0 if it finished.
run() {
  local dir=$1 name=$2; shift 2
  $CS "$@" --log_json="$dir/$name.jsonl" > "$dir/$name.log" 2>&1
}
# runmpi DIR NAME P FLAGS...: the same run as P processes (each with the flags' --nthread_per_process rank threads).
runmpi() {
  local dir=$1 name=$2 p=$3; shift 3
  mpirun --oversubscribe -np "$p" $CS "$@" --log_json="$dir/$name.jsonl" > "$dir/$name.log" 2>&1
}
# compare A B LOSS_ATOL: compare.py's summary line; LRs must be bit-identical (relative tolerance 0).
compare() { $PY "$HERE/compare.py" "$1" "$2" --lr-rtol=0 --loss-atol="$3" --quiet --labels=a,b 2>&1 | tail -1; }
field() { sed -n "s/.*$1 \([0-9.e+-]*\).*/\1/p" <<< "$2"; }
# Mean tokens/s over steps 2..N (--log_json) and the optimizer-state bytes per rank (the trainer's last log line).
figures() {
  $PY - "$1.jsonl" "$1.log" <<'PY'
import json, re, sys
tps = [o["tok_per_s"] for o in map(json.loads, open(sys.argv[1])) if "tok_per_s" in o and o.get("step", 0) > 1]
opt = re.findall(r"optimizer state: (\d+) bytes per rank", open(sys.argv[2]).read())
print(f"{sum(tps) / len(tps):.0f}" if tps else "-", opt[-1] if opt else "-")
PY
}

# run_scenario DIR NAME ROWFLAGS...: one run with the common flags ($base) and the row's, or a checkpoint row
# (InfiniTrain's `checkpoint` tag): `@resume=N [@then FLAGS...]` trains steps 1..N with the row's flags and saves at N,
# then a second process resumes from that checkpoint to the last step, with the flags after @then (another layout:
# the checkpoint is consolidated and cut again) or the same ones. Both write one --log_json (a resume appends).
run_scenario() {
  local dir=$1 name=$2; shift 2
  local first=() then=() at="" part=first f total
  for f in "$@"; do
    case "$f" in
      @resume=*) at=${f#@resume=} ;;
      @then) part=then ;;
      *) if [ $part = first ]; then first+=("$f"); else then+=("$f"); fi ;;
    esac
  done
  if [ -z "$at" ]; then run "$dir" "$name" "${base[@]}" "$@"; return; fi
  [ ${#then[@]} -gt 0 ] || then=("${first[@]}")
  total=$(printf '%s\n' "${base[@]}" | sed -n 's/^--num_iteration=//p' | tail -1)
  local span=(); [[ " ${base[*]} " == *" --lr_scheduler="* ]] && span=(--total_steps="$total")   # the schedule spans the whole run
  rm -rf "$dir/$name.ckpt" "$dir/$name.jsonl"
  run "$dir" "$name" "${base[@]}" "${first[@]}" "${span[@]}" --num_iteration="$at" --save="$dir/$name.ckpt" --save_interval="$at" &&
    $CS "${base[@]}" "${then[@]}" "${span[@]}" --load="$dir/$name.ckpt" --log_json="$dir/$name.jsonl" >> "$dir/$name.log" 2>&1
}

pass=0; failn=0; T0=$(date +%s)
mkdir -p "$OUT"
printf '%-34s %-28s %-11s %-6s %-6s %-6s %9s %12s\n' scenario layout "max|dloss|" LR twin mpi "tok/s" "opt B/rank"
for m in "${MS[@]}"; do for d in "${DS[@]}"; do for s in "${SS[@]}"; do
  dir="$OUT/$m-$d-$s"; rm -rf "$dir"; mkdir -p "$dir"
  tol=1e-5; [ "$d" = bfloat16 ] && tol=1e-2
  read -ra SF <<< "${SCHED[$s]}"
  base=(--model="${MODEL[$m]}" --dtype="$d" "${COMMON[@]}" "${SF[@]}")
  if ! run "$dir" baseline "${base[@]}" "${BASELINE[@]}"; then
    echo "$m-$d-$s: the single-device baseline failed: $(tail -1 "$dir/baseline.log")"; failn=$((failn + ${#SEL[@]})); continue
  fi
  for i in "${SEL[@]}"; do
    read -ra F <<< "${FLAGS[$i]}"
    name="$m-$d-$s/$i"; layout=$(sed 's/--nthread_per_process=/W=/g; s/--batch_size=/B=/g; s/--tensor_parallel=/TP=/g; s/--sequence_parallel/SP/g; s/--zero_stage=/ZeRO-/g; s/--lora_rank=/LoRA-r/g; s/--pipeline_parallel=/PP=/g; s/--virtual_pipeline_parallel=/VPP=/g; s/@resume=/resume@/; s/@then/->/' <<< "${FLAGS[$i]}")
    ok=1; dl="-"; lr="-"; tw="-"; mp="-"; tps="-"; opt="-"
    # A row with --lora_* flags is compared with the single-device run with the same LoRA flags (issue 10).
    # (A checkpoint row's flags after @then repeat its LoRA flags: the resumed run must have the same LoRA settings.)
    lf=(); for f in "${F[@]}"; do [ "$f" = @then ] && break; [[ "$f" == --lora_* ]] && lf+=("$f"); done
    ref=baseline
    if [ ${#lf[@]} -gt 0 ]; then
      ref="baseline-lora-$(printf '%s ' "${lf[@]}" | md5sum | cut -c1-8)"
      [ -s "$dir/$ref.jsonl" ] || run "$dir" "$ref" "${base[@]}" "${BASELINE[@]}" "${lf[@]}" || ref=""
    fi
    if [ -z "$ref" ]; then
      ok=0; dl="LoRA baseline failed"
    elif run_scenario "$dir" "$i" "${F[@]}"; then
      c=$(compare "$dir/$ref.jsonl" "$dir/$i.jsonl" "$tol")
      dl=$(field "max loss abs diff" "$c"); lr=$([ "$(field "max LR rel diff" "$c")" = "0.000e+00" ] && echo same || echo DIFF)
      [[ "$c" == *PASS ]] || ok=0
      if [ "${TWIN[$i]}" != - ]; then
        if [ -s "$dir/${TWIN[$i]}.jsonl" ] || run "$dir" "${TWIN[$i]}" "${base[@]}" ${FLAGS[${TWIN[$i]}]}; then
          t=$(compare "$dir/${TWIN[$i]}.jsonl" "$dir/$i.jsonl" 0)
          if [[ "$t" == *PASS ]]; then tw=bits; else tw=DIFF; ok=0; fi
        else tw=FAIL; ok=0; fi
      fi
      w=$(sed -n 's/.*--nthread_per_process=\([0-9]*\).*/\1/p' <<< "${FLAGS[$i]}")
      if [ "$BACKEND" != threads ] && [ -n "$w" ] && [ "$w" -gt 1 ] && [[ "${FLAGS[$i]}" != *@resume* ]]; then
        tpp=1; [ "$BACKEND" = hybrid ] && tpp=2
        if runmpi "$dir" "$i.mpi" $((w / tpp)) "${base[@]}" ${FLAGS[$i]/--nthread_per_process=$w/--nthread_per_process=$tpp}; then
          if [[ "$(compare "$dir/$i.jsonl" "$dir/$i.mpi.jsonl" 1e-6)" == *PASS ]]; then mp=same; else mp=DIFF; ok=0; fi
        else mp=FAIL; ok=0; fi
      fi
      read -r tps opt < <(figures "$dir/$i")
    else
      ok=0; dl="run failed: $(tail -1 "$dir/$i.log" | cut -c1-60)"
    fi
    printf '%-34s %-28s %-11s %-6s %-6s %-6s %9s %12s %s\n' "$name" "$layout" "$dl" "$lr" "$tw" "$mp" "$tps" "$opt" "$([ $ok = 1 ] && echo PASS || echo FAIL)"
    if [ $ok = 1 ]; then pass=$((pass + 1)); else failn=$((failn + 1)); fi
  done
done; done; done
echo "($(( $(date +%s) - T0 )) s, logs in $OUT)"
echo "matrix: $pass passed, $failn failed"
[ $failn = 0 ]
