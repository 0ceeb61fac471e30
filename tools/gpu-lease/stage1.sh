set -e
mkdir -p /root/stage /root/data /root/site /root/cache/gguf
cp .stage/smol.part* /root/stage/  # part 00 (call2.sh brings the others, one per call)
tar xzf .stage/data.tgz -C /root/data  # call 1 carries .stage/data.tgz beside the first model part
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /root/site .whl/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, peft, pandas, scipy; print(torch.__version__, transformers.__version__, peft.__version__, torch.cuda.get_device_name(0))"
ls /root/data
