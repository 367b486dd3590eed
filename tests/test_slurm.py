"""The SLURM path on a real SLURM: Debian's slurmctld, slurmd and munge, one node (this machine),
started and stopped by this test; `sbatch --wait slurm.sbatch python -m study.mnist1d_grid --smoke`
runs the study through `srun ray symmetric-run`. Skips, saying why, where SLURM is not installed
(.ci/run installs it: apt-get install slurmctld slurmd slurm-client munge)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scontrol", "scancel")
missing = [name for name in COMMANDS if not shutil.which(name) and not Path(f"/usr/sbin/{name}").exists()]
pytestmark = [pytest.mark.machine_wide,
              pytest.mark.skipif(bool(missing) or os.geteuid() != 0,
                                 reason=f"SLURM is not installed here ({', '.join(missing) or 'not root'}): "
                                        "apt-get install slurmctld slurmd slurm-client munge, as root")]


def which(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def slurm_conf(folder: Path) -> Path:
    """One node, this machine with its CPUs; every state file inside `folder`."""
    host = socket.gethostname()
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=hpstudy
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """munged, slurmctld and slurmd in the foreground of this test (stopped by their pids)."""
    folder = tmp_path_factory.mktemp("slurm")
    conf = slurm_conf(folder)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    munge = subprocess.Popen([which("munged"), "--force", "--foreground"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    time.sleep(1)
    daemons = [munge] + [subprocess.Popen([which(name), "-D", "-f", str(conf)], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.STDOUT) for name in ("slurmctld", "slurmd")]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run([which("sinfo"), "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(1)
        else:
            pytest.fail(f"the test's SLURM node did not come up: {state.stdout} {state.stderr}; "
                        f"{(folder / 'slurmctld.log').read_text()[-2000:] if (folder / 'slurmctld.log').exists() else ''}")
        yield env
    finally:
        subprocess.run([which("scancel"), "--full", "--user", "root"], env=env, capture_output=True)
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in reversed(daemons):
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()


def sbatch(env, folder: Path, *command: str) -> tuple[int, str]:
    """Submit the script and wait for the job to end: its exit code and output. Polls the job's
    state (sbatch --wait polls at growing intervals, which here costs more than the job)."""
    output = folder / "job.out"
    submitted = subprocess.run([which("sbatch"), "--parsable", f"--output={output}", str(REPO / "slurm.sbatch"),
                                *command], env=env, cwd=folder, capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = subprocess.run([which("scontrol"), "show", "job", "-o", job], env=env, capture_output=True,
                               text=True).stdout
        fields = dict(item.split("=", 1) for item in state.split() if "=" in item)
        if fields.get("JobState") not in (None, "PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            code = int(fields["ExitCode"].split(":")[0])
            return code, output.read_text() if output.exists() else ""
        time.sleep(0.5)
    pytest.fail(f"job {job} did not end within 600 s")


def test_a_smoke_study_runs_through_sbatch_and_ray_symmetric_run(slurm, tmp_path):
    code, out = sbatch(slurm, tmp_path, "python", "-m", "study.mnist1d_grid", "--smoke", "--storage",
                       str(tmp_path / "results"), "--data-root", str(tmp_path / "data"))
    assert code == 0, out[-4000:]
    assert "Running command on head node" in out and "--shared-storage" in out and "--address" in out, out[-4000:]
    assert "mnist1d_grid: 4 trials: 4 completed" in out, out[-4000:]
    trials = pd.read_parquet(tmp_path / "results" / "mnist1d_grid" / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "completed").all()


def test_a_failing_study_fails_the_job(slurm, tmp_path):
    code, out = sbatch(slurm, tmp_path, "python", "-m", "study.mnist1d_grid", "--smoke", "--epochs", "0",
                       "--storage", str(tmp_path / "results"))
    assert code != 0, out[-4000:]
    assert "argument --epochs: expected a positive integer, got '0'" in out, out[-4000:]
    assert not (tmp_path / "results").exists()
