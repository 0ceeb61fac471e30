# the quiet bench, then the SmolLM2 chain (and the Qwen chain when Qwen was staged) in the background
for t in qa multirc; do [ -f .stage/$t.tgz ] && tar xzf .stage/$t.tgz -C /root/data; done  # SQuAD, DROP, MultiRC (carried by this call)
rm -rf /root/code; cp -r $PWD /root/code; cd /root/code  # the code as of this call
# a quiet bench first (BENCH=quick ~1.5 min, BENCH=full ~6 min, BENCH=speedups the per-task table alone ~2-4 min,
# BENCH=none skips it; nothing else on the box), then the sweeps
[ "${BENCH:-quick}" = none ] || grep -q "BENCH DONE" /root/bench.log 2>/dev/null || bash .gpu/bench_bg.sh > /root/bench.log 2>&1
grep -E "^(dominant|published|dlzo_full|fo_)" /root/bench.log
NGPU=$(nvidia-smi -L | wc -l)
if [ -f /root/cache/gguf/qwen2.5-0.5b.gguf ] && [ "$NGPU" -ge 2 ]; then
  # x2 box (default since session 12): Qwen alone on GPU 0 with 10 workers (6-12 GB each), SmolLM2 on the other
  # GPUs with 14 workers each (SMOL_GPUS). Session 12 measured it: 41 Qwen rows in ~25 min of sweeps against
  # session 11's 20 (7 Qwen workers sharing GPU 0 with 10 SmolLM2 ones), GPU 0 110-130 GB, GPU 1 up to 139 GB.
  # The Qwen table has ~185 runs left, so GPU 0 will not idle; once it is done, SMOL_GPUS=0,1 gives SmolLM2 both.
  (CUDA_VISIBLE_DEVICES=0 QWEN_WORKERS=${QWEN_WORKERS:-10} setsid nohup bash .gpu/qwen.sh > /root/qwen.log 2>&1 < /dev/null &)
  export SMOL_GPUS=${SMOL_GPUS:-$(seq -s, 1 $(( NGPU - 1 )))}
  export SMOL_WORKERS=${SMOL_WORKERS:-$(( 14 * (NGPU - 1) ))}
elif [ -f /root/cache/gguf/qwen2.5-0.5b.gguf ]; then
  (setsid nohup bash .gpu/qwen.sh > /root/qwen.log 2>&1 < /dev/null &)
else
  export SMOL_WORKERS=${SMOL_WORKERS:-$(( 14 * NGPU ))}  # every GPU for SmolLM2 (x2 box: 28)
fi
# SMOL_GPUS (e.g. 1, or 0,1) is the GPUs SmolLM2's workers go round-robin over (default: every GPU but the Qwen one)
if [ -n "${SMOL_GPUS:-}" ]; then export CUDA_VISIBLE_DEVICES=$SMOL_GPUS; fi
(setsid nohup bash .gpu/smol.sh > /root/smol.log 2>&1 < /dev/null &)
sleep 45; tail -n 3 /root/*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
