# Background chain on the box (started by start.sh with setsid): Qwen2.5-0.5B every-layer SST-2 sweep, then
# the Qwen main-results core (7 tasks x 4 methods x 3 seeds), then the full table (9 tasks x 8 methods x 3
# seeds, main_qwen2.5-0.5b), which includes the core with the lr searched on dev (main_core_tuned_qwen2.5-0.5b).
cd /root/code; source .gpu/env.sh; export PYTHONPATH=/root/code:/root/site
F="--device cuda --cuda-graphs --paired-passes --tf32 --no-progress --keep-going"
date; python3 -c "from dlzo.models import load_model; load_model('qwen2.5-0.5b', device='cpu', progress=False)"
# The sweep's last runs (3 in session 9) and the core side by side, so no worker waits for the sweep's slow
# full-MeZO runs; QWEN_WORKERS for the core (6 beside SmolLM2 on one GPU; start.sh gives it 10 on its own GPU).
(date; python3 -m dlzo sweep experiments/layer_sweep_qwen2.5-0.5b.yaml --results /root/res/layer_sweep_qwen2.5-0.5b \
  --run-logs /root/logs/qsweep --parallel 3 --min-free-gb 14 $F; date; echo QWEN SWEEP DONE) &
date; python3 -m dlzo sweep experiments/main_core_qwen2.5-0.5b.yaml --results /root/res/main_core_qwen2.5-0.5b \
  --run-logs /root/logs/qcore --parallel ${QWEN_WORKERS:-6} --min-free-gb 14 $F
# then the nine-task, eight-method table on Qwen. It holds every run of the tuned core (same run keys), whose
# last 11 runs (10 of them cut off mid-way, their logs moved to main_qwen's run logs in session 12) it runs
# itself: the cut-off runs resume first, then seed 0 of every cell, and no worker idles at the tuned core's
# tail, as it would if that grid ran alone first. merge.py copies those rows back into the tuned core's table.
# The seven classification tasks first (--tasks: their 3-seed table before any SQuAD/DROP run, which takes far
# longer), then SQuAD and DROP.
CLS=sst2,copa,cb,wsc,rte,boolq,multirc
date; python3 -m dlzo sweep experiments/main_qwen2.5-0.5b.yaml --results /root/res/main_qwen2.5-0.5b --tasks $CLS \
  --adopt /root/res/main_core_tuned_qwen2.5-0.5b --run-logs /root/logs/qmain --parallel ${QWEN_WORKERS:-6} --min-free-gb 14 $F
# SQuAD/DROP runs hold far more memory than the classification ones (SmolLM2's: ~10 GB a worker on the H200, session
# 15), so fewer workers there (QWEN_QA_WORKERS); --min-free-gb waits, per run, for what finished runs of the same
# task and method held (rows' peak_gpu_gib, since session 15), so after the first of each kind no worker starts
# one into too little memory. QWEN_QA_GPUS (e.g. 0,1; default: the GPU qwen.sh was given) spreads these
# workers round-robin over more GPUs: Qwen's SQuAD/DROP runs are the long pole of the tables once SmolLM2's
# are done (session 16), so a lease with SmolLM2 finished can give Qwen both GPUs (and SMOL_WORKERS fewer).
date; CUDA_VISIBLE_DEVICES=${QWEN_QA_GPUS:-${CUDA_VISIBLE_DEVICES:-0}} python3 -m dlzo sweep \
  experiments/main_qwen2.5-0.5b.yaml --results /root/res/main_qwen2.5-0.5b \
  --run-logs /root/logs/qmain --parallel ${QWEN_QA_WORKERS:-6} --min-free-gb 14 $F
wait; date; echo QWEN DONE
