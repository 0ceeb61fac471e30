# Background chains on the box (started by start.sh with setsid), side by side:
#   A: the ZO every-layer sweep (SST-2, COPA, RTE), then the main table (main_smollm2, adopting main_core's runs),
#      then its finer lr grid on the classification tasks (main_finer_lr_smollm2)
#   B: the ablations, the RTE/COPA controls, the first-order every-layer sweep (SST-2), then every layer with
#      its own lr (SST-2)
# SMOL_WORKERS workers in all (10 beside the Qwen chain on one GPU, 10 or 14 per GPU on an x2 box), SMOL_SHARE_A
# percent of them for chain A (default 80 since session 12, which left main_smollm2 123 runs: 78 short ones of
# the classification tasks' seeds 1-2 and 45 of SQuAD/DROP; chain B: ablations and controls complete, FO 95,
# per-layer lr 180);
# SMOL_FLAGS e.g. --no-loop-graphs. With several GPUs visible, each --parallel sweep spreads its workers over them.
cd /root/code; source .gpu/env.sh; export PYTHONPATH=/root/code:/root/site
N=${SMOL_WORKERS:-10}; NA=$(( N * ${SMOL_SHARE_A:-80} / 100 )); NB=$(( N - NA ))
CLS=sst2,rte,cb,boolq,wsc,multirc,copa  # the main tables' classification tasks (short runs)
G="--device cuda --cuda-graphs --paired-passes --no-progress --min-free-gb 6 --keep-going ${SMOL_FLAGS:-}"
chain_a() {
  date; python3 -m dlzo sweep experiments/layer_sweep_smollm2.yaml --results /root/res/layer_sweep_smollm2 \
    --run-logs /root/logs/lsweep --parallel $NA $G
  # the seven classification tasks first (session 12: their seeds 1-2 are short runs that complete the 3-seed
  # table, while SQuAD/DROP runs take 15-40 min each under a full lease's load), then SQuAD and DROP
  date; python3 -m dlzo sweep experiments/main_smollm2.yaml --results /root/res/main_smollm2 --tasks $CLS \
    --adopt /root/res/main_core_smollm2 --run-logs /root/logs/main --parallel $NA $G
  date; python3 -m dlzo sweep experiments/main_smollm2.yaml --results /root/res/main_smollm2 \
    --run-logs /root/logs/main --parallel $NA $G
  # then the finer lr grid of the claims' three methods on the classification tasks (session 21: the per-layer lr
  # sweep put layer 11's SST-2 optimum between main_smollm2's two lrs); main_smollm2's runs at the shared lrs
  # are adopted, also those its lr search readies later
  date; python3 -m dlzo sweep experiments/main_finer_lr_smollm2.yaml --results /root/res/main_finer_lr_smollm2 \
    --adopt /root/res/main_smollm2 --run-logs /root/logs/finer --parallel $NA $G
  date; echo CHAIN A DONE
}
chain_b() {
  # SMOL_B_GPUS (e.g. 0 on an x2 box) moves chain B to other GPUs than chain A's: in session 16 its 3 first-order
  # workers (1.6 GB each) finished 3 runs in 25 min, waiting on --min-free-gb behind chain A's SQuAD/DROP workers
  if [ -n "${SMOL_B_GPUS:-}" ]; then export CUDA_VISIBLE_DEVICES=$SMOL_B_GPUS; fi
  date; python3 -m dlzo sweep experiments/ablations_smollm2.yaml --results /root/res/ablations_smollm2 \
    --run-logs /root/logs/abl --parallel $NB $G
  date; python3 -m dlzo sweep experiments/controls_smollm2.yaml --results /root/res/controls_smollm2 \
    --parallel $NB $G  # the RTE/COPA controls (complete since session 12)
  # the first-order every-layer sweep's seeds 1-2 (95 runs, ~200 s each under load) before every layer with its
  # own lr (180 runs): session 12 put it back first, as notebook 02's FO-vs-ZO comparison is on issue #6's list
  # and needs its 3 seeds, while the per-layer lr sweep is this project's own follow-up
  date; python3 -m dlzo sweep experiments/fo_layer_sweep_smollm2.yaml --results /root/res/fo_layer_sweep_smollm2 \
    --parallel $NB --device cuda --no-progress --min-free-gb 6 --keep-going
  date; python3 -m dlzo sweep experiments/layer_lr_sweep_smollm2.yaml --results /root/res/layer_lr_sweep_smollm2 \
    --adopt /root/res/layer_sweep_smollm2 --run-logs /root/logs/lrsweep --parallel $NB $G
  date; echo CHAIN B DONE
}
chain_a > /root/smol_a.log 2>&1 &
chain_b > /root/smol_b.log 2>&1 &
wait; echo SMOL DONE
