#!/usr/bin/env bash
# Launches the training of this bundle: Qwen/Qwen2.5-72B-Instruct, lora, DeepSpeed ZeRO-3, on 2 nodes × 8× NVIDIA H100 80GB HBM3 (SXM5).
# Written by tunefit. Targets LLaMA-Factory 0.9.x (hiyouga/LlamaFactory@ff6d4d12ee), transformers >=4.55.0,<=5.8.0, not 4.57.0 or 5.6.0, DeepSpeed <=0.18.4, accelerate <=1.11.0.
# Run it on each of the 2 nodes: NODE_RANK=<0..1> MASTER_ADDR=<first node's address> ./launch.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

NNODES=2
NPROC_PER_NODE=8
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
case "$NODE_RANK" in
  ''|*[!0-9]*) echo "launch.sh: NODE_RANK must be a number from 0 to $((NNODES - 1)), got '$NODE_RANK'" >&2; exit 2 ;;
esac
if (( NODE_RANK >= NNODES )); then
  echo "launch.sh: NODE_RANK $NODE_RANK is out of range for $NNODES nodes" >&2; exit 2
fi
if (( NODE_RANK > 0 )) && [[ "$MASTER_ADDR" == 127.0.0.1 ]]; then
  echo "launch.sh: on node $NODE_RANK, set MASTER_ADDR to the first node's address" >&2; exit 2
fi

# The plan's GPUs: torchrun sizes itself by the visible devices.
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0,1,2,3,4,5,6,7}"
export CUDA_VISIBLE_DEVICES

# Fail early when this node sees fewer GPUs than the plan was made for: CUDA_VISIBLE_DEVICES names the ones
# the ranks use, and nvidia-smi lists the ones the machine has (it ignores CUDA_VISIBLE_DEVICES).
IFS=, read -r -a devices <<< "$CUDA_VISIBLE_DEVICES"
if (( ${#devices[@]} < NPROC_PER_NODE )); then
  echo "launch.sh: this plan needs $NPROC_PER_NODE GPUs per node; CUDA_VISIBLE_DEVICES names ${#devices[@]}" >&2; exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  present="$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)"
  if (( present < NPROC_PER_NODE )); then
    echo "launch.sh: this plan needs $NPROC_PER_NODE GPUs per node; nvidia-smi lists $present" >&2; exit 1
  fi
fi

# llamafactory-cli starts torchrun with these variables.
export FORCE_TORCHRUN=1 NNODES NPROC_PER_NODE
export NODE_RANK MASTER_ADDR MASTER_PORT
exec llamafactory-cli train train.yaml
