# One Qwen2.5-0.5B part per call (carry .stage/q.partNN); the call that brings the last part joins them and
# checks the sha256 that make_stage.sh recorded. Parts carried earlier stay in the box's checkout too.
mkdir -p /root/stage /root/cache/gguf
cp .stage/q.part* /root/stage/
have=$(ls /root/stage/q.part* | wc -l); want=$(cat .gpu/qparts)
echo "$have of $want parts"
if [ "$have" -ge "$want" ]; then
  cat $(ls /root/stage/q.part* | sort) > /root/cache/gguf/qwen2.5-0.5b.gguf && rm /root/stage/q.part*
  echo "$(cat .gpu/qwen.sha256)  /root/cache/gguf/qwen2.5-0.5b.gguf" | sha256sum -c -
fi
tail -n 3 /root/bench.log 2>/dev/null
