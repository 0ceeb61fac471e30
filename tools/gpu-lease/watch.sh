sleep $1
date; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
for d in /root/res/*/; do echo $d $(cat $d/*.jsonl 2>/dev/null | wc -l); done
tail -n 3 /root/*.log
tar czf $OUT/res.tgz -C /root res
tar czf $OUT/logs.tgz -C /root logs
ls -la $OUT
