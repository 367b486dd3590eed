"""What the Ray cluster a study runs on can provide, checked before anything is written.

A node shape is what one node offers (CPUs, GPUs): the nodes that are up, and the node
types its autoscaler can still launch. An autoscaling cluster often starts with no GPU
worker up, so what is up alone would say "no GPUs". The node types are read, first found:
- the autoscaler's cluster config in the GCS (what Ray Data reads for the same purpose;
  KubeRay reports it there; Ray 2.60's own autoscaler, v1 or v2, did not here),
- --cluster-config YAML,
- ~/ray_bootstrap_config.yaml, which `ray up` leaves on the head node.
Where none says anything (a head started by hand with `--autoscaling-config`), the types
are unknown: nothing is refused for not fitting the nodes up, since the autoscaler may
launch one that fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from common.errors import UserError

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where `ray up` puts the cluster's config on the head


@dataclass(frozen=True)
class NodeShape:
    name: str  # a node type of the autoscaling config, or "node <address>" for one that is up
    cpus: float
    gpus: float
    launchable: bool  # a worker type the autoscaler can start (max_workers > 0)

    def describe(self) -> str:
        return f"{self.name}: {self.cpus:g} CPU, {self.gpus:g} GPU"


@dataclass(frozen=True)
class Cluster:
    nodes: list[NodeShape]  # the nodes up now
    node_types: list[NodeShape] | None  # the types the autoscaler can launch; None: no source says
    source: str  # where node_types came from, for messages

    @property
    def shapes(self) -> list[NodeShape]:
        return self.nodes + (self.node_types or [])


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


def gcs_shapes(head: NodeShape | None) -> list[NodeShape] | None:
    """The node groups of the cluster config the autoscaler reported to the GCS, None where there is none.

    A group that can launch nothing (max_count 0) is left out, and so is one that is only the head
    (max_count 1 and the head's resources), as Ray Data does: it cannot be scaled up."""
    import ray

    config = ray._private.state.state.get_cluster_config()
    if config is None or not config.node_group_configs:
        return None
    shapes = []
    for group in config.node_group_configs:
        shape = NodeShape(group.name, float(group.resources.get("CPU", 0)), float(group.resources.get("GPU", 0)), True)
        if group.max_count == 0 or (group.max_count == 1 and head and (shape.cpus, shape.gpus) == (head.cpus, head.gpus)):
            continue
        shapes.append(shape)
    return shapes


def cluster_shapes(cluster_config: str | None, own_ray: bool = False) -> Cluster:
    """The nodes up now, and the node types the autoscaler can launch where something says.

    `own_ray`: the study started this Ray itself, so its nodes are all there is."""
    import ray

    nodes, head = [], None
    for node in ray.nodes():
        if node["Alive"]:
            shape = NodeShape(f"node {node['NodeManagerAddress']}", float(node["Resources"].get("CPU", 0)),
                              float(node["Resources"].get("GPU", 0)), False)
            nodes.append(shape)
            if "node:__internal_head__" in node["Resources"]:
                head = shape
    if own_ray:
        return Cluster(nodes, [], "a local Ray")
    from_gcs = gcs_shapes(head)
    if from_gcs is not None:
        return Cluster(nodes, from_gcs, "the autoscaler's cluster config in the GCS")
    path = Path(cluster_config or BOOTSTRAP_CONFIG).expanduser()
    if cluster_config and not path.is_file():
        raise UserError(f"--cluster-config {cluster_config} does not exist; give the YAML the cluster was started with")
    if path.is_file():
        launchable = [shape for shape in config_shapes(path) if shape.launchable]
        return Cluster(nodes, launchable, f"--cluster-config {cluster_config}" if cluster_config else BOOTSTRAP_CONFIG)
    return Cluster(nodes, None, "")


def default_gpus(cluster: Cluster) -> float:
    """One GPU per trial where any node the cluster has or can launch has one, else none."""
    return 1.0 if any(shape.gpus > 0 for shape in cluster.shapes) else 0.0


def fits(shapes: list[NodeShape], cpus: float, gpus: float) -> bool:
    return any(shape.cpus >= cpus and shape.gpus >= gpus for shape in shapes)


def check_fits(cluster: Cluster, cpus: float, gpus: float) -> str | None:
    """A trial that no node can hold would wait forever: say so instead. Where the node types are
    unknown and no node up holds it, the autoscaler may still launch one: the line to print."""
    if fits(cluster.shapes, cpus, gpus):
        return None
    if cluster.node_types is None:
        return (f"node types unknown (no autoscaler config in the GCS, no {BOOTSTRAP_CONFIG}, no --cluster-config) "
                f"and no node up offers {cpus:g} CPU and {gpus:g} GPU: trials wait for the autoscaler to launch one "
                "(give --cluster-config YAML to check that it can)")
    offered = "; ".join(shape.describe() for shape in cluster.shapes if shape.cpus or shape.gpus) or "no CPUs or GPUs"
    raise UserError(f"a trial asks for {cpus:g} CPU and {gpus:g} GPU, but no node the cluster has or can launch "
                    f"offers that ({offered}; node types from {cluster.source}); lower --cpus-per-trial / "
                    "--gpus-per-trial, or add such a node type")


def check_shared_storage(cluster: Cluster, storage: str, shared: bool, cpus: float, gpus: float) -> None:
    """Trials write checkpoints and results from their own node: a local folder must be one every
    node sees (--shared-storage), or an object store. Trials run on other nodes where more than one
    node offers resources, where the autoscaler can launch workers, or where no node up holds a trial."""
    if "://" in storage or shared:
        return
    workers = [shape for shape in cluster.shapes if (shape.cpus or shape.gpus) or shape.launchable]
    if len(workers) > 1 or any(shape.launchable for shape in workers):
        elsewhere = "; ".join(s.describe() for s in workers)
    elif not fits(cluster.nodes, cpus, gpus):
        elsewhere = "on nodes the autoscaler launches"
    else:
        return
    raise UserError(f"--storage {storage} is a folder on this machine, but trials run on other nodes too "
                    f"({elsewhere}); use --storage s3://BUCKET/PATH or gs://BUCKET/PATH, or add --shared-storage "
                    "if that folder is a filesystem every node mounts")
