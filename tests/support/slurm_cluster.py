"""A real one-node SLURM cluster on loopback, for tests of the SLURM profile.

Debian's slurmctld and slurmd (and munged) run as root; state, spool, logs and pid files
live in a private folder. The configuration must sit at SLURM's default path,
/etc/slurm/slurm.conf: Snakemake's jobstep plugin removes ``SLURM_CONF`` (with every
other ``SLURM_*`` variable) before it calls ``srun`` inside a job. The files written
there carry a marker line; a configuration without it is never overwritten, and ours are
removed on stop. The node declares one fake GPU (``File=/dev/null``) so that GPU requests
are scheduled as on a cluster.

Every daemon this cluster starts (slurmctld, slurmd and their slurmstepd, and munged when
none was running) carries ``AFFALIGN_SLURM_CLUSTER=<its folder>`` in its environment;
stopping the cluster ends all of them, SIGKILL after a grace period, and a start that
fails half-way stops what it started.

Usable from the command line too, to try the profile by hand:
``python tests/support/slurm_cluster.py start /tmp/slurm`` prints the ``SLURM_CONF`` to export;
``python tests/support/slurm_cluster.py stop /tmp/slurm`` ends the daemons.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from processes import stop_marked_processes

PARTITION = "affalign-ci"
# A second partition on the same node, for jobs without a GPU (AFFALIGN_SLURM_CPU_PARTITION).
CPU_PARTITION = "affalign-ci-cpu"
NODE = "localhost"
CONF_DIR = Path("/etc/slurm")
MARKER = "# written by affalign's tests/support/slurm_cluster.py; removed when its cluster stops"
DAEMONS = ("slurmctld", "slurmd", "munged")
CLUSTER_MARKER = "AFFALIGN_SLURM_CLUSTER"


class ClusterError(RuntimeError):
    """The loopback cluster could not be started."""


def missing_requirements() -> str | None:
    """Why a loopback cluster cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the SLURM daemons need root"
    missing = [tool for tool in (*DAEMONS, "sbatch", "squeue", "scontrol", "munge") if not shutil.which(tool)]
    if missing:
        return f"not installed: {', '.join(missing)} (make system-deps installs slurm-wlm and munge)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterError("cannot read MemTotal from /proc/meminfo")


class LoopbackCluster:
    """slurmctld + slurmd for one node named ``localhost`` with all cores and one fake GPU."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.conf = CONF_DIR / "slurm.conf"
        self.gres_conf = CONF_DIR / "gres.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment clients (sbatch, squeue, Snakemake's plugin) need."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    @property
    def daemon_env(self) -> dict[str, str]:
        """The daemons' environment: the clients' and the marker that finds them on stop."""
        return dict(self.env, **{CLUSTER_MARKER: str(self.root)})

    def write_config(self) -> None:
        for existing in (self.conf, self.gres_conf):
            if existing.exists() and MARKER not in existing.read_text():
                raise ClusterError(
                    f"{existing} exists and is not ours: refusing to overwrite a real SLURM set-up"
                )
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        for folder in ("state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        # Leave the kernel and the test process some memory: slurmd drains a node
        # that reports less than it declares.
        memory = int(_memory_mb() * 0.85)
        self.conf.write_text(
            "\n".join(
                [
                    MARKER,
                    "ClusterName=affalign-ci",
                    f"SlurmctldHost={NODE}",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    # Containers have no systemd/cgroup delegation.
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "DefMemPerCPU=1000",
                    "GresTypes=gpu",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SchedulerType=sched/backfill",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "MailProg=/bin/true",
                    # Finished jobs stay visible to squeue/scontrol this long (seconds);
                    # Snakemake's plugin polls squeue when there is no accounting.
                    "MinJobAge=600",
                    f"NodeName={NODE} CPUs={cpus} RealMemory={memory} Gres=gpu:1 State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
                    f"PartitionName={CPU_PARTITION} Nodes={NODE} Default=NO MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        # Without File= slurmd cannot account for the device and the node drains.
        self.gres_conf.write_text(f"{MARKER}\nNodeName={NODE} Name=gpu Count=1 File=/dev/null\n")

    def _start_munge(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(
            ["runuser", "-u", "munge", "--", shutil.which("munged")], check=True, env=self.daemon_env
        )
        self._wait(lambda: subprocess.run(["munge", "-n"], capture_output=True).returncode == 0, "munged", 20)

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.5)
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted((self.root / "log").glob("*.log"))
        )
        raise ClusterError(f"{what} not ready after {timeout:.0f} s\n{logs}")

    def node_state(self) -> str:
        result = subprocess.run(
            ["sinfo", "--noheader", "--nodes", NODE, "--format", "%T"],
            capture_output=True,
            text=True,
            env=self.env,
        )
        return result.stdout.strip()

    def start(self) -> LoopbackCluster:
        running = subprocess.run(
            ["pgrep", "-x", "slurmctld|slurmd"], capture_output=True, text=True
        ).stdout.split()
        if running:
            raise ClusterError(
                f"SLURM daemons already run here (pids {', '.join(running)}); one loopback cluster at a time"
            )
        try:
            self.write_config()
            self._start_munge()
            env = self.daemon_env
            subprocess.run([shutil.which("slurmctld"), "-f", str(self.conf)], check=True, env=env)
            subprocess.run([shutil.which("slurmd"), "-f", str(self.conf), "-N", NODE], check=True, env=env)
            self._wait(lambda: self.node_state() in {"idle", "mixed", "allocated"}, f"node {NODE}", 60)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel what is left and end every daemon this cluster started (munged too, unless
        it ran before the cluster started: then it may serve others)."""
        for partition in (PARTITION, CPU_PARTITION):
            subprocess.run(["scancel", "--partition", partition], capture_output=True, env=self.env)
        for daemon in ("slurmd", "slurmctld"):
            pid_file = self.root / f"{daemon}.pid"
            try:
                pid = int(pid_file.read_text())
            except (FileNotFoundError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                os.kill(pid, signal.SIGKILL)
        # slurmstepd, munged and anything a pid file missed.
        stop_marked_processes(CLUSTER_MARKER, str(self.root))
        for ours in (self.conf, self.gres_conf):
            if ours.exists() and MARKER in ours.read_text():
                ours.unlink()

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    action, root = sys.argv[1], Path(sys.argv[2])
    cluster = LoopbackCluster(root)
    if action == "start":
        cluster.start()
        print(f"cluster up: partition {PARTITION}, configuration {cluster.conf}, state in {root}")
    else:
        cluster.stop()
