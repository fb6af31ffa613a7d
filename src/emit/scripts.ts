import { LOW_MEMORY_OPTIMIZER_NAMES, type Plan } from "../schema/plan.ts";
import { BUNDLE_FILES, modelSlug, usesDeepSpeed, usesFsdp } from "./common.ts";
import { type EmitOptions, resolveEmitOptions } from "./options.ts";
import { targetsLine } from "./versions.ts";

/*
 * launch.sh and slurm.sbatch. Every value that reaches a command line is shell-quoted; the only value the plan
 * puts on one is `train.yaml` (launch.sh changes into its own folder first), because llamafactory-cli joins its
 * arguments and splits them on whitespace again. Comment text is stripped of control characters so that no value
 * can end a comment line.
 */

/** Quotes a value for POSIX shells: `it's` → `'it'\''s'`. */
export function shellQuote(value: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Text safe inside a `#` comment: control characters (newlines, and NEL, which YAML 1.1 breaks lines on) become spaces. */
export function commentText(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  return value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " ");
}

/** One line describing the plan, for headers. */
export function planSummary(plan: Plan): string {
  const hw = `${plan.nodes > 1 ? `${plan.nodes} nodes × ` : ""}${plan.gpus}× ${plan.gpu.name}`;
  const optimizer =
    plan.lowMemoryOptimizer === null ? "" : ` with ${LOW_MEMORY_OPTIMIZER_NAMES[plan.lowMemoryOptimizer]}`;
  const method = `${plan.method === "qlora" ? `qlora ${plan.quantBits}-bit ${plan.quantMethod}` : plan.method}${optimizer}`;
  const strategy =
    plan.sharding === "none"
      ? plan.gpus * plan.nodes > 1
        ? "DDP"
        : "one GPU"
      : plan.sharding === "fsdp"
        ? `FSDP1 ${plan.fsdpStrategy}`
        : plan.sharding === "fsdp2"
          ? "FSDP2"
          : `DeepSpeed ${plan.sharding.replace("zero", "ZeRO-")}`;
  const offload = plan.offload === "none" ? "" : `, offload ${plan.offload}`;
  return commentText(`${plan.model.id}, ${method}, ${strategy}${offload}, on ${hw}`);
}

const header = (lines: readonly string[]) => lines.map((l) => (l ? `# ${commentText(l)}` : "#")).join("\n");

/** launch.sh: runs this bundle's training on one node; on several nodes, once per node with NODE_RANK set. */
export function launchScript(plan: Plan, options: EmitOptions = {}): string {
  const o = resolveEmitOptions(plan, options);
  const world = plan.gpus * plan.nodes;
  const multiNode = plan.nodes > 1;
  const lines: string[] = [
    "#!/usr/bin/env bash",
    header([
      `Launches the training of this bundle: ${planSummary(plan)}.`,
      `Written by tunefit. ${targetsLine(plan.model.architecture.modelType)}`,
      multiNode
        ? `Run it on each of the ${plan.nodes} nodes: NODE_RANK=<0..${plan.nodes - 1}> MASTER_ADDR=<first node's address> ./launch.sh`
        : "Run: ./launch.sh",
    ]),
    "set -euo pipefail",
    'cd "$(dirname "${BASH_SOURCE[0]}")"',
    "",
    `NNODES=${plan.nodes}`,
    `NPROC_PER_NODE=${plan.gpus}`,
  ];
  if (multiNode) {
    lines.push(
      'NODE_RANK="${NODE_RANK:-0}"',
      'MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"',
      `MASTER_PORT="\${MASTER_PORT:-${o.masterPort}}"`,
      'case "$NODE_RANK" in',
      `  ''|*[!0-9]*) echo "launch.sh: NODE_RANK must be a number from 0 to $((NNODES - 1)), got '$NODE_RANK'" >&2; exit 2 ;;`,
      "esac",
      "if (( NODE_RANK >= NNODES )); then",
      '  echo "launch.sh: NODE_RANK $NODE_RANK is out of range for $NNODES nodes" >&2; exit 2',
      "fi",
      'if (( NODE_RANK > 0 )) && [[ "$MASTER_ADDR" == 127.0.0.1 ]]; then',
      `  echo "launch.sh: on node $NODE_RANK, set MASTER_ADDR to the first node's address" >&2; exit 2`,
      "fi",
    );
  }
  lines.push(
    "",
    world === 1
      ? "# One GPU: with more visible, llamafactory-cli would start torchrun over all of them (a different plan)."
      : usesFsdp(plan)
        ? "# The plan's GPUs: the launcher and FSDP's hybrid groups size themselves by the visible devices."
        : "# The plan's GPUs: torchrun sizes itself by the visible devices.",
    world === 1
      ? 'CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"'
      : `CUDA_VISIBLE_DEVICES="\${CUDA_VISIBLE_DEVICES:-${Array.from({ length: plan.gpus }, (_, i) => i).join(",")}}"`,
    ...(world === 1 ? ['CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES%%,*}"'] : []),
    "export CUDA_VISIBLE_DEVICES",
    "",
    "# Fail early when this node sees fewer GPUs than the plan was made for: CUDA_VISIBLE_DEVICES names the ones",
    "# the ranks use, and nvidia-smi lists the ones the machine has (it ignores CUDA_VISIBLE_DEVICES).",
    'IFS=, read -r -a devices <<< "$CUDA_VISIBLE_DEVICES"',
    "if (( ${#devices[@]} < NPROC_PER_NODE )); then",
    '  echo "launch.sh: this plan needs $NPROC_PER_NODE GPUs per node; CUDA_VISIBLE_DEVICES names ${#devices[@]}" >&2; exit 1',
    "fi",
    "if command -v nvidia-smi >/dev/null 2>&1; then",
    '  present="$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)"',
    "  if (( present < NPROC_PER_NODE )); then",
    '    echo "launch.sh: this plan needs $NPROC_PER_NODE GPUs per node; nvidia-smi lists $present" >&2; exit 1',
    "  fi",
    "fi",
    "",
  );
  if (usesFsdp(plan)) {
    lines.push(
      "# FSDP goes through accelerate with LLaMA-Factory's training entry point (llamafactory.launcher runs run_exp).",
      "# llamafactory-cli sets these for its torchrun path (OPTIM_TORCH); keep the same behaviour here.",
      'export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"',
      'export TORCH_NCCL_AVOID_RECORD_STREAMS="${TORCH_NCCL_AVOID_RECORD_STREAMS:-1}"',
      `args=(--config_file ${shellQuote(BUNDLE_FILES.accelerate)})`,
    );
    if (multiNode) {
      lines.push(
        'args+=(--machine_rank "$NODE_RANK" --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT")',
      );
    }
    lines.push(
      `exec accelerate launch "\${args[@]}" -m llamafactory.launcher ${shellQuote(BUNDLE_FILES.trainYaml)}`,
    );
  } else {
    const torchrun = world > 1 || usesDeepSpeed(plan);
    if (torchrun) {
      lines.push(
        usesDeepSpeed(plan) && world === 1
          ? "# DeepSpeed needs a distributed launch even on one GPU (LLaMA-Factory: FORCE_TORCHRUN=1)."
          : "# llamafactory-cli starts torchrun with these variables.",
        "export FORCE_TORCHRUN=1 NNODES NPROC_PER_NODE",
      );
      if (multiNode) lines.push("export NODE_RANK MASTER_ADDR MASTER_PORT");
    }
    lines.push(`exec llamafactory-cli train ${shellQuote(BUNDLE_FILES.trainYaml)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** slurm.sbatch: one task per node, each running launch.sh with its node rank; rendezvous on the first node. */
export function slurmScript(plan: Plan, options: EmitOptions = {}): string {
  const o = resolveEmitOptions(plan, options);
  const lines = [
    "#!/usr/bin/env bash",
    `#SBATCH --job-name=tunefit-${modelSlug(plan)}`,
    `#SBATCH --nodes=${plan.nodes}`,
    "#SBATCH --ntasks-per-node=1",
    `#SBATCH --gpus-per-node=${plan.gpus}`,
    "#SBATCH --exclusive",
    "#SBATCH --mem=0",
    "#SBATCH --output=slurm-%j.out",
    header([
      `Runs this bundle on ${plan.nodes} nodes: ${planSummary(plan)}.`,
      `Written by tunefit. ${targetsLine(plan.model.architecture.modelType)}`,
      "Submit from the bundle's folder: sbatch slurm.sbatch",
    ]),
    "set -euo pipefail",
    'bundle="${SLURM_SUBMIT_DIR:-$PWD}"',
    'if [[ ! -x "$bundle/launch.sh" ]]; then',
    '  echo "slurm.sbatch: submit it from the bundle folder (no launch.sh in $bundle)" >&2; exit 2',
    "fi",
    'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"', // reads all: no SIGPIPE under pipefail
    `MASTER_PORT="\${MASTER_PORT:-${o.masterPort}}"`,
    "export MASTER_ADDR MASTER_PORT",
    `if [[ "\${SLURM_NNODES:-${plan.nodes}}" != ${plan.nodes} ]]; then`,
    `  echo "slurm.sbatch: this plan is for ${plan.nodes} nodes, the job has $SLURM_NNODES" >&2; exit 2`,
    "fi",
    "# One task per node; each runs launch.sh with its node rank.",
    `srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c 'NODE_RANK="$SLURM_NODEID" exec "$1"' bash "$bundle/launch.sh"`,
  ];
  return `${lines.join("\n")}\n`;
}
