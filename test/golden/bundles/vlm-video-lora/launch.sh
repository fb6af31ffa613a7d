#!/usr/bin/env bash
# Launches the training of this bundle: Qwen/Qwen2.5-VL-7B-Instruct, lora, one GPU, on 1× NVIDIA A100 80GB (SXM4; PCIe variant noted).
# Written by tunefit. Targets LLaMA-Factory 0.9.x (hiyouga/LlamaFactory@ff6d4d12ee), transformers >=4.55.0,<=5.8.0, not 4.57.0 or 5.6.0, DeepSpeed <=0.18.4, accelerate <=1.11.0.
# Run: ./launch.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

NNODES=1
NPROC_PER_NODE=1

# One GPU: with more visible, llamafactory-cli would start torchrun over all of them (a different plan).
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES%%,*}"
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

exec llamafactory-cli train train.yaml
