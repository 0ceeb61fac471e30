sleep $1
date; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
for d in /root/res/*/; do echo $d $(cat $d/shard-*.jsonl 2>/dev/null | wc -l) "failed: $(cat $d/failed.jsonl 2>/dev/null | wc -l)"; done
# a warning's own line is filtered out below (its next line is the source line it points at), so count the
# out-of-memory retries (dlzo.experiments.run_grid) separately
for f in /root/*.log; do echo "== $f ($(grep -c 'ran out of device memory' "$f") out-of-memory retries)"; grep -v -e clean_up_tokenization -e Warn -e 'counts = run_grid' "$f" | tail -n 3; done
tar czf $OUT/res.tgz -C /root res
tar czf $OUT/logs.tgz -C /root logs
ls -la $OUT
