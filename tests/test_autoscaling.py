"""A real autoscaling Ray cluster on this machine (Ray's fake multi-node provider): a head with no
CPUs and a GPU worker type the autoscaler launches on demand, started by hand (`ray start --head
--autoscaling-config`), as KubeRay and hand-built clusters run it. With the node types known
(--cluster-config, or a cluster config in the GCS) a trial no node type can hold and a local results
folder are refused before anything starts; with them unknown the study says so, scales the cluster
up, and every trial completes on a worker."""

import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from study.run import main

from conftest import REPO

# `ray start --head` is the cluster any plain ray.init() joins; `ray stop --force` kills every Ray
pytestmark = pytest.mark.machine_wide

# Ray's fake_multinode provider starts "nodes" as local raylets; the wheel ships no template of it.
CLUSTER = {
    "cluster_name": "hpstudy_fake",
    "max_workers": 2,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True},
    "auth": {"ssh_user": "ubuntu"},
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 0}, "max_workers": 0, "node_config": {}},
        "gpu_worker": {"resources": {"CPU": 1, "GPU": 1}, "min_workers": 0, "max_workers": 2, "node_config": {}},
    },
    "head_node_type": "ray.head.default",
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 1,
    "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
    "rsync_filter": [], "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
    "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
}


@pytest.fixture
def autoscaling_cluster(tmp_path):
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(CLUSTER))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1"}
    try:
        subprocess.run(["ray", "start", "--head", f"--autoscaling-config={config}", "--num-cpus=0",
                        "--include-dashboard=false"], env=env, check=True, capture_output=True, timeout=120)
        yield config
    finally:  # in every outcome: the head, the autoscaler and the nodes it launched
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)


def study(tmp_path, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "study.mnist1d_grid", "--smoke", "--address", "auto",
                           "--data-root", str(tmp_path / "data"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_a_study_scales_an_autoscaling_cluster_up_and_gets_its_gpus(autoscaling_cluster, tmp_path, capsys):
    config = str(autoscaling_cluster)
    results = tmp_path / "results"

    # a local folder on a cluster whose trials run elsewhere: refused, nothing written (in this process:
    # it joins the cluster and leaves it)
    flags = ["--smoke", "--address", "auto", "--data-root", str(tmp_path / "data"), "--storage", str(results),
             "--cluster-config", config]
    assert main("mnist1d_grid", flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "is a folder on this machine, but trials run on other nodes too (gpu_worker: 1 CPU, 1 GPU)" in err
    # a trial no node can hold would wait forever: refused
    assert main("mnist1d_grid", [*flags, "--shared-storage", "--gpus-per-trial", "2"]) == 2
    err = capsys.readouterr().err
    assert "a trial asks for 1 CPU and 2 GPU, but no node the cluster has or can launch" in err, err
    assert not results.exists()

    # no worker is up, yet the GPU default is 1 per trial: it comes from the worker type (shown by a
    # trial too big in CPUs, whose refusal states what it asked for)
    assert main("mnist1d_grid", [*flags, "--shared-storage", "--cpus-per-trial", "2"]) == 2
    err = capsys.readouterr().err
    assert "a trial asks for 2 CPU and 1 GPU, but no node" in err, err

    # without --cluster-config nothing says what the autoscaler can launch (Ray 2.60's autoscaler
    # reports no cluster config to the GCS): not refused for the nodes up, but a local folder still
    # is, since no node up holds a trial
    unknown = ["--smoke", "--address", "auto", "--data-root", str(tmp_path / "data"), "--storage", str(results)]
    assert main("mnist1d_grid", unknown) == 2
    err = capsys.readouterr().err
    assert "trials run on other nodes too (on nodes the autoscaler launches)" in err, err
    assert not results.exists()

    # the autoscaler launches workers; a GPU share per trial: two trials share each worker's GPU
    proc = study(tmp_path, "--storage", str(results), "--shared-storage", "--gpus-per-trial", "0.5",
                 "--cpus-per-trial", "0.5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ("mnist1d_grid: node types unknown (no autoscaler config in the GCS, no ~/ray_bootstrap_config.yaml, "
            "no --cluster-config) and no node up offers 0.5 CPU and 0.5 GPU: trials wait for the autoscaler") in proc.stdout
    assert "4 trials: 4 completed" in proc.stdout
    folder = results / "mnist1d_grid"
    run = json.loads(pq.read_schema(folder / "trials.parquet").metadata[b"hpstudy.run"])
    assert run["gpus_per_trial"] == 0.5
    epochs = pd.read_parquet(folder / "epochs.parquet")
    # the node list goes through a file: the autoscaler's own lines reach a driver's stdout at any time
    head_file = tmp_path / "head_nodes.json"
    subprocess.run([sys.executable, "-c", "import json, ray, sys; ray.init(address='auto'); json.dump([n['NodeID'] "
                    "for n in ray.nodes() if n['Resources'].get('GPU', 0) == 0], open(sys.argv[1], 'w'))",
                    str(head_file)], check=True, capture_output=True, timeout=120)
    head = json.loads(head_file.read_text())
    assert head and not set(epochs["node_id"]) & set(head)  # trials ran on GPU workers only
    assert 1 <= epochs["node_id"].nunique() <= 2  # workers the autoscaler launched (at most max_workers)
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(str(folder)).trials
    assert len(trials) == 4 and all(t.status == "TERMINATED" for t in trials)
    assert {t.placement_group_factory.required_resources["GPU"] for t in trials} == {0.5}

    # a cluster config in the GCS, as KubeRay reports it (through the GCS's own ReportClusterConfig
    # call): its node groups are the types, with no --cluster-config; the head's own group is not one
    subprocess.run([sys.executable, "-c", REPORT_CLUSTER_CONFIG], check=True, capture_output=True, timeout=120)
    big = ["--smoke", "--address", "auto", "--data-root", str(tmp_path / "data"), "--storage", str(tmp_path / "big"),
           "--shared-storage"]
    assert main("mnist1d_grid", [*big, "--cpus-per-trial", "4"]) == 2  # the GPU default comes from the GCS too
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "a trial asks for 4 CPU and 1 GPU, but no node the cluster has or can launch offers that" in err, err
    assert "gcs_gpu_worker: 2 CPU, 1 GPU" in err and "gcs_head" not in err, err
    assert not (tmp_path / "big").exists()


REPORT_CLUSTER_CONFIG = """
import ray
from ray._raylet import GcsClient
from ray.core.generated.autoscaler_pb2 import ClusterConfig, NodeGroupConfig

ray.init(address="auto")
config = ClusterConfig(node_group_configs=[
    NodeGroupConfig(name="gcs_head", resources={}, min_count=1, max_count=1),
    NodeGroupConfig(name="gcs_gpu_worker", resources={"CPU": 2, "GPU": 1}, min_count=0, max_count=4),
    NodeGroupConfig(name="gcs_disabled", resources={"CPU": 64, "GPU": 8}, min_count=0, max_count=0)])
GcsClient(address=ray.get_runtime_context().gcs_address).report_cluster_config(config.SerializeToString())
"""


def test_an_explicit_address_of_a_token_cluster_says_to_turn_token_mode_on(tmp_path):
    # Ray 2.60 starts a head with token authentication where a token exists, but a driver sends the
    # token to an explicit address only with RAY_AUTH_MODE=token. The token lives in this test's folder
    # (RAY_AUTH_TOKEN_PATH), so no later `ray start` on this machine turns authentication on.
    token = tmp_path / "auth_token"
    token.write_text("hpstudy-test-token-" + "0" * 32)
    env = {**os.environ, "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_AUTH_MODE", None)
    try:
        subprocess.run(["ray", "start", "--head", "--port=6391", "--num-cpus=1", "--include-dashboard=false"],
                       env={**env, "RAY_AUTH_MODE": "token"}, check=True, capture_output=True, timeout=120)
        proc = subprocess.run([sys.executable, "-m", "study.mnist1d_grid", "--smoke", "--address", "127.0.0.1:6391",
                               "--storage", str(tmp_path / "results"), "--data-root", str(tmp_path / "data")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot connect to Ray at 127.0.0.1:6391" in last and "set RAY_AUTH_MODE=token" in last, proc.stderr
    assert not (tmp_path / "results").exists()
