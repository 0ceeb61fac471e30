# after BENCH DONE: Qwen chain + SmolLM2 chain, in the background
cd /root/code
grep -q "BENCH DONE" /root/bench.log || { echo "bench still running"; tail -5 /root/bench.log; exit 0; }
(setsid nohup bash .gpu/qwen.sh > /root/qwen.log 2>&1 < /dev/null &)
(setsid nohup bash .gpu/smol.sh > /root/smol.log 2>&1 < /dev/null &)
sleep 60; tail -n 3 /root/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
