# One SmolLM2 part per call (carry .stage/smol.partNN and .gpu; stage1.sh brought part 00): the call that brings
# the last part joins them, checks the sha256 make_stage.sh recorded and lets call2.sh go on; an earlier call
# stops here with rc 1 (normal: call again with the next part).
set -e
cp .stage/smol.part* /root/stage/
have=$(ls /root/stage/smol.part* | wc -l); want=$(cat .gpu/smolparts)
echo "$have of $want SmolLM2 parts"
if [ "$have" -lt "$want" ]; then exit 1; fi
cat $(ls /root/stage/smol.part* | sort) > /root/cache/gguf/smollm2-135m.gguf && rm /root/stage/smol.part*
echo "$(cat .gpu/smol.sha256)  /root/cache/gguf/smollm2-135m.gguf" | sha256sum -c -
