import type { Plan } from "../schema/plan.ts";
import { modelSlug } from "./common.ts";
import { type EmitOptions, resolveEmitOptions } from "./options.ts";

/*
 * pytorchjob.yaml: a Kubeflow training-operator PyTorchJob (kubeflow.org/v1), one Master and nodes − 1 Workers,
 * one pod per node with all its GPUs. The operator injects MASTER_ADDR and MASTER_PORT (the Master's service and
 * the container port named `pytorchjob-port`) and the node rank (PET_NODE_RANK, or RANK = replica index on
 * older operators); the container maps them onto launch.sh's variables. The image must hold LLaMA-Factory and
 * this bundle at /workspace/bundle (see README.md); until the placeholder is replaced the pods cannot pull it
 * (InvalidImageName).
 */

/** The rendezvous port the operator's MASTER_PORT comes from (its default port name and number). */
export const PYTORCHJOB_PORT = 23456;
/** Where the image holds the bundle. */
export const BUNDLE_MOUNT = "/workspace/bundle";

function replica(
  plan: Plan,
  image: string,
  replicas: number,
  hostBytes: number | undefined,
): Record<string, unknown> {
  // the predicted host memory per node (loading, offload) as a scheduling request; no limit, so a low estimate
  // cannot get the pod killed
  const resources: Record<string, unknown> = { limits: { "nvidia.com/gpu": plan.gpus } };
  if (hostBytes !== undefined && hostBytes > 0) {
    resources.requests = { memory: `${Math.ceil(hostBytes / 1024 ** 3)}Gi` };
  }
  return {
    replicas,
    restartPolicy: "OnFailure",
    template: {
      spec: {
        containers: [
          {
            name: "pytorch",
            image,
            imagePullPolicy: "IfNotPresent",
            workingDir: BUNDLE_MOUNT,
            command: ["bash", "-c", 'NODE_RANK="${PET_NODE_RANK:-$RANK}" exec ./launch.sh'],
            ports: [{ name: "pytorchjob-port", containerPort: PYTORCHJOB_PORT }],
            resources,
            volumeMounts: [{ name: "dshm", mountPath: "/dev/shm" }],
          },
        ],
        // NCCL and the data loader workers need more shared memory than a pod's 64 MiB default
        volumes: [{ name: "dshm", emptyDir: { medium: "Memory" } }],
      },
    },
  };
}

/** The PyTorchJob manifest of a multi-node plan, or null for one node. */
export function pytorchJob(
  plan: Plan,
  options: EmitOptions = {},
  /** predicted host memory per node (the memory model's hostRam), requested for each pod */
  hostBytes?: number,
): Record<string, unknown> | null {
  if (plan.nodes < 2) return null;
  const { image } = resolveEmitOptions(plan, options);
  const name = `tunefit-${modelSlug(plan)}`.replace(/\./g, "-").slice(0, 52).replace(/-+$/, "");
  return {
    apiVersion: "kubeflow.org/v1",
    kind: "PyTorchJob",
    metadata: { name },
    spec: {
      pytorchReplicaSpecs: {
        Master: replica(plan, image, 1, hostBytes),
        Worker: replica(plan, image, plan.nodes - 1, hostBytes),
      },
    },
  };
}
