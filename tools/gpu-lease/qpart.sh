cp .stage/q.part* /root/stage/; ls /root/stage
if [ -e /root/stage/q.part08 ]; then cat /root/stage/q.part0* > /root/cache/gguf/qwen2.5-0.5b.gguf && rm /root/stage/q.part0* && sha256sum /root/cache/gguf/qwen2.5-0.5b.gguf; fi
tail -n 3 /root/bench.log
