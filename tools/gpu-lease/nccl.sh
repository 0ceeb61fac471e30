# Data-parallel ZO over NCCL on a box with two or more GPUs (run by call2.sh when it finds them): the CUDA test
# (two ranks identical, equal to one GPU), then `dlzo train --distributed` under torchrun on SmolLM2 layer 11
# (SST-2, batch 32, 200 steps) against the same run on one GPU: final parameters, dev scores and step times
# go to $OUT/nccl.json.
cd /root/code; source .gpu/env.sh; export PYTHONPATH=/root/code:/root/site
[ "$(nvidia-smi -L | wc -l)" -ge 2 ] || { echo "nccl.sh: one GPU, skipped"; exit 0; }
timeout 120 python3 -m pytest -q -o addopts="" -p no:cacheprovider tests/test_distributed.py 2>&1 | tail -3
A="-m dlzo train --model smollm2-135m --task sst2 --select 11 --lr 1e-3 --steps 200 --batch-size 32 --num-dev 200
   --num-test 0 --eval-every 200 --no-progress"
timeout 200 python3 -m torch.distributed.run --nproc_per_node 2 $A --distributed --out /root/ddp2 2>&1 | grep -v -e Warn -e clean_up | tail -4
CUDA_VISIBLE_DEVICES=0 timeout 200 python3 $A --device cuda --out /root/ddp1 2>&1 | grep -v -e Warn -e clean_up | tail -4
python3 tools/gpu-lease/nccl_compare.py /root/ddp1 /root/ddp2 $OUT/nccl.json
