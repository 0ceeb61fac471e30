# the quiet bench, then the SmolLM2 chain (and the Qwen chain when Qwen was staged) in the background
for t in qa multirc; do [ -f .stage/$t.tgz ] && tar xzf .stage/$t.tgz -C /root/data; done  # SQuAD, DROP, MultiRC (carried by this call)
rm -rf /root/code; cp -r $PWD /root/code; cd /root/code  # the code as of this call
# a quiet bench first (BENCH=quick ~1.5 min, BENCH=full ~4 min, BENCH=none skips it; nothing else on the box), then the sweeps
[ "${BENCH:-quick}" = none ] || grep -q "BENCH DONE" /root/bench.log 2>/dev/null || bash .gpu/bench_bg.sh > /root/bench.log 2>&1
grep -E "^(dominant|published|dlzo_full|fo_)" /root/bench.log
NGPU=$(nvidia-smi -L | wc -l)
if [ -f /root/cache/gguf/qwen2.5-0.5b.gguf ] && [ "$NGPU" -ge 2 ]; then
  # x2 box: Qwen on GPU 0 only; SmolLM2 round-robin over both GPUs (dlzo sweep --parallel does that), so GPU 0
  # fills with SmolLM2 runs once the last Qwen runs end (session 11: the Qwen core is complete; the tuned grid has 52 runs left).
  # Memory on GPU 0: 7 Qwen workers (6-12 GB each) + 10 SmolLM2 workers (3-4.5 GB) stay under ~130 GB.
  (CUDA_VISIBLE_DEVICES=0 QWEN_WORKERS=${QWEN_WORKERS:-7} setsid nohup bash .gpu/qwen.sh > /root/qwen.log 2>&1 < /dev/null &)
  export SMOL_WORKERS=${SMOL_WORKERS:-$(( 10 * NGPU ))}
elif [ -f /root/cache/gguf/qwen2.5-0.5b.gguf ]; then
  (setsid nohup bash .gpu/qwen.sh > /root/qwen.log 2>&1 < /dev/null &)
else
  export SMOL_WORKERS=${SMOL_WORKERS:-$(( 14 * NGPU ))}  # every GPU for SmolLM2 (x2 box: 28)
fi
# SMOL_GPUS (e.g. 1) keeps SmolLM2 off the Qwen GPU: session 12 gave Qwen GPU 0 alone (QWEN_WORKERS=10) and
# SmolLM2 GPU 1 (SMOL_WORKERS=14), since the nine-task Qwen table had no runs of its own yet
if [ -n "${SMOL_GPUS:-}" ]; then export CUDA_VISIBLE_DEVICES=$SMOL_GPUS; fi
(setsid nohup bash .gpu/smol.sh > /root/smol.log 2>&1 < /dev/null &)
sleep 45; tail -n 3 /root/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
