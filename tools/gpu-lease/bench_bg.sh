cd /root/code; source .gpu/env.sh; export PYTHONPATH=/root/code:/root/site
ALL=forward,two_forwards,mezo_published_full,dlzo_full,dlzo_full_eager_loops,dlzo_dominant,dlzo_dominant_no_prefix,dlzo_lora_full,dlzo_lora_dominant,fo_adamw_full,two_forwards_graphed,dlzo_full_graphed,dlzo_dominant_graphed,dlzo_dominant_paired,dlzo_dominant_paired_graphed
FEW=forward,two_forwards,mezo_published_full,dlzo_full,dlzo_full_eager_loops,dlzo_dominant,fo_adamw_full,two_forwards_graphed,dlzo_full_graphed,dlzo_dominant_graphed,dlzo_dominant_paired,dlzo_dominant_paired_graphed
B="python3 -m dlzo bench --device cuda --layer 11 --repeats 20 --warmup 5 --no-progress"
date; $B --cases $ALL --json /root/res/bench_fp32.json 2>&1 | grep -v Warn | tail -22
date; $B --cases $FEW --tf32 --json /root/res/bench_tf32.json 2>&1 | grep -v Warn | tail -18
date; $B --cases $FEW --dtype bfloat16 --json /root/res/bench_bf16.json 2>&1 | grep -v Warn | tail -18
date; echo BENCH DONE
