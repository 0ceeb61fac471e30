# Background chain on the box (started by start.sh with setsid): SmolLM2 every-layer sweeps (ZO: COPA, RTE;
# then first order on SST-2).
cd /root/code; source .gpu/env.sh; export PYTHONPATH=/root/code:/root/site
G="--device cuda --cuda-graphs --paired-passes --no-progress"
date; python3 -m dlzo sweep experiments/layer_sweep_smollm2.yaml --results /root/res/layer_sweep_smollm2 \
  --run-logs /root/logs/lsweep --parallel 10 --min-free-gb 6 $G
date; python3 -m dlzo sweep experiments/fo_layer_sweep_smollm2.yaml --results /root/res/fo_layer_sweep_smollm2 \
  --parallel 10 --min-free-gb 6 --device cuda --no-progress
date; echo SMOL DONE
