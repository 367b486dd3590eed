"""What the Ray cluster a study runs on can provide, checked before anything is written.

A node shape is what one node offers (CPUs, GPUs): the nodes that are up, and the node
types its autoscaler can still launch, read from the autoscaling config that `ray up`
leaves on the head node (~/ray_bootstrap_config.yaml) or the one given with
--cluster-config. An autoscaling cluster often starts with no GPU worker up, so what is
up alone would say "no GPUs".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from trainables.errors import UserError

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where `ray up` puts the cluster's config on the head


@dataclass(frozen=True)
class NodeShape:
    name: str  # a node type of the autoscaling config, or "node <address>" for one that is up
    cpus: float
    gpus: float
    launchable: bool  # a worker type the autoscaler can start (max_workers > 0)

    def describe(self) -> str:
        return f"{self.name}: {self.cpus:g} CPU, {self.gpus:g} GPU"


def config_shapes(path: Path) -> list[NodeShape]:
    """The node types of an autoscaling config (its head type and the worker types it can launch)."""
    try:
        config = yaml.safe_load(path.read_text())
        head = config["head_node_type"]
        types = config["available_node_types"]
        shapes = []
        for name, node_type in types.items():
            resources = node_type.get("resources") or {}
            launchable = name != head and int(node_type.get("max_workers", config.get("max_workers", 0))) > 0
            shapes.append(NodeShape(name, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), launchable))
        return shapes
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"--cluster-config {path} is not a readable Ray cluster config ({type(exc).__name__}: "
                        f"{exc}); give the YAML the cluster was started with") from None


def cluster_shapes(cluster_config: str | None) -> list[NodeShape]:
    """The nodes up now, and the node types the autoscaler can launch (where its config is known)."""
    import ray

    shapes = [NodeShape(f"node {node['NodeManagerAddress']}", float(node["Resources"].get("CPU", 0)),
                        float(node["Resources"].get("GPU", 0)), False)
              for node in ray.nodes() if node["Alive"]]
    path = Path(cluster_config or BOOTSTRAP_CONFIG).expanduser()
    if cluster_config and not path.is_file():
        raise UserError(f"--cluster-config {cluster_config} does not exist; give the YAML the cluster was started with")
    if path.is_file():
        shapes += [shape for shape in config_shapes(path) if shape.launchable]
    return shapes


def default_gpus(shapes: list[NodeShape]) -> float:
    """One GPU per trial where any node the cluster has or can launch has one, else none."""
    return 1.0 if any(shape.gpus > 0 for shape in shapes) else 0.0


def check_fits(shapes: list[NodeShape], cpus: float, gpus: float) -> None:
    """A trial that no node can hold would wait forever: say so instead."""
    if any(shape.cpus >= cpus and shape.gpus >= gpus for shape in shapes):
        return
    offered = "; ".join(shape.describe() for shape in shapes if shape.cpus or shape.gpus) or "no CPUs or GPUs"
    raise UserError(f"a trial asks for {cpus:g} CPU and {gpus:g} GPU, but no node the cluster has or can launch "
                    f"offers that ({offered}); lower --cpus-per-trial / --gpus-per-trial, or add such a node type")


def check_shared_storage(shapes: list[NodeShape], storage: str, shared: bool) -> None:
    """Trials write checkpoints and results from their own node: a local folder must be one every
    node sees (--shared-storage), or an object store."""
    if "://" in storage or shared:
        return
    workers = [shape for shape in shapes if (shape.cpus or shape.gpus) or shape.launchable]
    if len(workers) > 1 or any(shape.launchable for shape in workers):
        raise UserError(f"--storage {storage} is a folder on this machine, but trials run on other nodes too "
                        f"({'; '.join(s.describe() for s in workers)}); use --storage s3://BUCKET/PATH or "
                        "gs://BUCKET/PATH, or add --shared-storage if that folder is a filesystem every node mounts")
