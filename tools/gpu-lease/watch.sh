sleep $1
date; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
for d in /root/res/*/; do echo $d $(cat $d/shard-*.jsonl 2>/dev/null | wc -l) "failed: $(cat $d/failed.jsonl 2>/dev/null | wc -l)"; done
for f in /root/*.log; do echo "== $f"; grep -v -e clean_up_tokenization -e Warn "$f" | tail -n 3; done
tar czf $OUT/res.tgz -C /root res
tar czf $OUT/logs.tgz -C /root logs
ls -la $OUT
