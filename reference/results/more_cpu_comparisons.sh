#!/bin/bash
# more C# vs PyTorch comparisons (CPU)
cd /tmp/ref; P=/work/wt/pytorch-ref/reference/pytorch; C="dotnet /tmp/cs_trainer/Trainer.dll --noprogress"
W=/tmp/ref-dp
run() { # name model-script flags...
  n=$1; s=$2; shift 2
  timeout 900 $C "$@" --log_json=/tmp/ref/m_$n.cs.jsonl > /tmp/ref/m_$n.cs.log 2>&1
  timeout 900 /usr/bin/python3 $P/$s.py "$@" --log_json=/tmp/ref/m_$n.py.jsonl > /tmp/ref/m_$n.py.log 2>&1
  echo "== $n"; /usr/bin/python3 /work/wt/pytorch-ref/reference/compare.py /tmp/ref/m_$n.cs.jsonl /tmp/ref/m_$n.py.jsonl --quiet | tail -2
}
run sgd_onecycle llama3 --llmc_filepath=$W/llama3-tiny.bin --input_bin=$W/tok32.bin --batch_size=2 --sequence_length=32 --total_batch_size=128 --num_iteration=5 --optimizer=sgd --momentum=0.9 --learning_rate=0.05 --lr-scheduler=onecycle --grad_clip=0
run adam_steplr gpt2 --llmc_filepath=$W/gpt2-tiny.bin --input_bin=$W/tok16.bin --batch_size=2 --sequence_length=32 --total_batch_size=128 --num_iteration=5 --optimizer=adam --weight_decay=0.01 --lr-scheduler=steplr --step-size=2 --gamma=0.5 --warmup-steps=1
run json_chain gpt2 --llmc_filepath=$W/gpt2-tiny.bin --input_bin=$W/tok16.bin --batch_size=2 --sequence_length=32 --total_batch_size=128 --num_iteration=5 '--lr-schedule={"type":"ChainedScheduler","schedulers":[{"type":"CosineAnnealingLR","T_max":4,"eta_min":0.0001},{"type":"ExponentialLR","gamma":0.9}]}'
# DP: C# threads x8 vs torchrun x8
timeout 900 $C --llmc_filepath=$W/gpt2-tiny.bin --input_bin=$W/tok16.bin --batch_size=2 --sequence_length=32 --total_batch_size=512 --num_iteration=5 --lr-scheduler=cosine --warmup-steps=2 --min-lr=1e-5 --learning_rate=1e-3 --weight_decay=0.1 --grad_clip=1.0 --nthread_per_process=8 --log_json=/tmp/ref/m_dp8.cs.jsonl > /tmp/ref/m_dp8.cs.log 2>&1
echo "== dp8 (C# 8 threads vs torch single-process in check_dp)"; /usr/bin/python3 /work/wt/pytorch-ref/reference/compare.py /tmp/ref/m_dp8.cs.jsonl $W/gpt2.dp8.jsonl --quiet | tail -3
