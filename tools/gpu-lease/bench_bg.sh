# The quiet bench (run by start.sh before the sweeps, nothing else on the box). BENCH=quick (default): fp32
# every case + the allocator snapshots in both case orders; BENCH=full adds TF32, bf16 and the per-task table;
# BENCH=speedups runs the per-task table alone (seven tasks, COPA to MultiRC; ~2-4 min, needs qa.tgz and
# multirc.tgz, which start.sh unpacks first).
cd /root/code; source .gpu/env.sh; export PYTHONPATH=/root/code:/root/site
S="timeout 400 python3 tools/gpu-lease/speedups.py /root/res/task_speedups_h200.csv"
if [ "${BENCH:-quick}" = speedups ]; then
  date; $S 2>&1 | grep -v Warn | tail -9
  date; echo BENCH DONE; exit 0
fi
ALL=forward,two_forwards,mezo_published_full,dlzo_full,dlzo_full_eager_loops,dlzo_dominant,dlzo_dominant_no_prefix,dlzo_lora_full,dlzo_lora_dominant,fo_adamw_full,two_forwards_graphed,dlzo_full_graphed,dlzo_dominant_graphed,dlzo_dominant_paired,dlzo_dominant_paired_graphed
FEW=forward,two_forwards,mezo_published_full,dlzo_full,dlzo_full_eager_loops,dlzo_dominant,fo_adamw_full,two_forwards_graphed,dlzo_full_graphed,dlzo_dominant_graphed,dlzo_dominant_paired,dlzo_dominant_paired_graphed
B="python3 -m dlzo bench --device cuda --layer 11 --repeats 20 --warmup 5 --no-progress"
M="timeout 120 python3 tools/gpu-lease/memsnap.py"
date; $B --cases $ALL --json /root/res/bench_fp32.json 2>&1 | grep -v Warn | tail -24
date; $M --dtype float32 --out /root/res/memsnap_fp32.txt 2>&1 | grep -v Warn | tail -12
date; $M --dtype float32 --published-first --out /root/res/memsnap_fp32_old_order.txt 2>&1 | grep -v Warn | tail -12
if [ "${BENCH:-quick}" = full ]; then
  date; $B --cases $FEW --tf32 --json /root/res/bench_tf32.json 2>&1 | grep -v Warn | tail -18
  date; $B --cases $FEW --dtype bfloat16 --json /root/res/bench_bf16.json 2>&1 | grep -v Warn | tail -18
  date; $M --dtype bfloat16 --out /root/res/memsnap_bf16.txt 2>&1 | grep -v Warn | tail -12
  date; $S 2>&1 | grep -v Warn | tail -9
fi
date; echo BENCH DONE
