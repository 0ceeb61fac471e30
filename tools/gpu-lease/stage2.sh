set -e
cat /root/stage/smol.part00 .stage/smol.part01 > /root/cache/gguf/smollm2-135m.gguf
rm /root/stage/smol.part00
sha256sum /root/cache/gguf/smollm2-135m.gguf
