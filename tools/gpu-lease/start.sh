# the quiet bench, then the Qwen chain + SmolLM2 chain in the background
rm -rf /root/code; cp -r $PWD /root/code; cd /root/code  # the code as of this call
# a quiet bench first (~2 minutes, nothing else running on the box), then the sweeps
grep -q "BENCH DONE" /root/bench.log 2>/dev/null || bash .gpu/bench_bg.sh > /root/bench.log 2>&1
grep -E "^(dominant|published|dlzo_full|fo_)" /root/bench.log
(setsid nohup bash .gpu/qwen.sh > /root/qwen.log 2>&1 < /dev/null &)
(setsid nohup bash .gpu/smol.sh > /root/smol.log 2>&1 < /dev/null &)
sleep 60; tail -n 3 /root/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
