"""The model server's lifetime: nothing of it outlives the service job, however that ends.

The fast tests use plain processes that behave like vLLM's (a member of the server's
session that ignores SIGTERM, as ``EngineCore`` does); the slow ones run the real vLLM CPU
server with a tiny Llama and end it in each way a run can end. Every process a test starts
carries a marker in its environment, so that re-parented engine processes are found too.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import REPO, run_snakemake, write_config
from processes import processes_with_environment, wait_until_gone
from tiny_models import tiny_engine

from affalign.generate.prompts import ShardSpec
from affalign.generate.shards import Sampling, write_generation_shard
from affalign.service import ConsumerOptions
from affalign.service.account import write_job_account
from affalign.service.metrics import samples_file
from affalign.service.session import STOP_GRACE_S, SessionGuard, session_members, stop_session

PROMPT_TYPES = ("default", "liberal")

RUN_MARKER = "AFFALIGN_TEST_SERVER_RUN"
SOURCE = str(REPO / "src")

# A process that ignores SIGTERM, as vLLM's EngineCore does, and says when it does.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(600)"
)
# A session leader that starts a stubborn member, prints the member's pid, then waits.
LEADER = (
    "import subprocess, sys, time; "
    f"member = subprocess.Popen([sys.executable, '-c', {STUBBORN!r}], stdout=subprocess.PIPE, text=True); "
    "member.stdout.readline(); print(member.pid, flush=True); "
    "time.sleep(float(sys.argv[1]))"
)


def start_leader(lifetime_s: float, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, str(lifetime_s)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    return leader, int(leader.stdout.readline())


def test_a_session_whose_leader_has_exited_is_still_stopped():
    # The API server killed: its stubborn engine member lives on, re-parented.
    leader, member = start_leader(0)
    leader.wait()
    assert session_members(leader.pid) == [member]
    killed = stop_session(leader.pid, leader, grace_s=STOP_GRACE_S)
    assert killed == [member]
    assert session_members(leader.pid) == []


def test_a_member_that_ignores_sigterm_gets_sigkill_after_the_grace_period():
    leader, member = start_leader(600)
    assert sorted(session_members(leader.pid)) == sorted([leader.pid, member])
    killed = stop_session(leader.pid, leader, grace_s=1.0)
    assert killed == [member]  # the leader ended on SIGTERM
    assert leader.returncode == -signal.SIGTERM
    assert session_members(leader.pid) == []


# A stand-in for the service wrapper: starts a server session and its guard, then waits.
WRAPPER = (
    "import subprocess, sys, time; "
    "from affalign.service.session import SessionGuard; "
    f"leader = subprocess.Popen([sys.executable, '-c', {LEADER!r}, '600'], stdout=subprocess.PIPE, "
    "text=True, start_new_session=True); "
    "member = int(leader.stdout.readline()); "
    "guard = SessionGuard(leader.pid, grace_s=1.0); "
    "print(leader.pid, member, guard.process.pid, flush=True); "
    "time.sleep(600)"
)


def test_the_guard_stops_the_server_when_the_wrapper_is_killed():
    # Snakemake kills every job of a group with SIGKILL when one fails: the wrapper cannot
    # clean up, its guard must.
    marker = uuid.uuid4().hex
    wrapper = subprocess.Popen(
        [sys.executable, "-c", WRAPPER],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=SOURCE, **{RUN_MARKER: marker}),
    )
    leader, member, _guard = map(int, wrapper.stdout.readline().split())
    assert sorted(session_members(leader)) == sorted([leader, member])
    wrapper.kill()
    wrapper.wait()
    assert wait_until_gone(RUN_MARKER, marker, timeout_s=60) == {}  # server, member and guard
    assert session_members(leader) == []


def test_the_guard_ends_with_a_wrapper_that_stopped_the_server_itself():
    marker = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=SOURCE, **{RUN_MARKER: marker})
    leader, _member = start_leader(600, env=env)

    guard = SessionGuard(leader.pid, grace_s=1.0)
    stop_session(leader.pid, leader, grace_s=1.0)
    guard.release(timeout_s=30)
    assert guard.process.returncode == 0
    assert processes_with_environment(RUN_MARKER, marker) == {}


def test_an_environment_without_vllm_fails_in_one_line_naming_the_interpreter(tmp_path):
    # This environment has vLLM; hiding it from the import system is the only way to be
    # one without it here (find_spec returns None for a module set to None).
    hide_vllm = (
        "import runpy, sys; sys.modules['vllm'] = None; "
        "runpy.run_module('affalign.service.server', run_name='__main__')"
    )
    service = tmp_path / "results" / "services" / "m.json"
    result = subprocess.run(
        [sys.executable, "-c", hide_vllm, "--model", "m", "--source", str(tmp_path),
         "--service-file", str(service), "--server-log", str(tmp_path / "m.server.log")],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SOURCE), timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"the interpreter {sys.executable} " in lines[0] and "has no vLLM" in lines[0], lines[0]
    # The consumers read the reason from the service file instead of waiting for it.
    state = json.loads(service.read_text())
    assert state["status"] == "failed" and "has no vLLM" in state["error"]


def test_the_server_runs_with_the_interpreter_running_snakemake(study):
    workdir, config = study
    configfile = write_config(workdir / "study.yaml", config)
    model = next(iter(config["models"]))
    target = f"results/generated/{model}/covid-19/mask-mandates/default.parquet"
    dry = run_snakemake(workdir, "--dry-run", "--printshellcmds", "--", target, configfile=configfile)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"exec {shlex.quote(sys.executable)} -m affalign.service.server" in dry.stdout, dry.stdout


# --- The real vLLM CPU server -----------------------------------------------------------

ENGINE = tiny_engine(max_num_seqs=8)


class Wrapper:
    """``python -m affalign.service.server`` for a tiny model, every process of it marked."""

    def __init__(
        self,
        model_dir: Path,
        folder: Path,
        engine: dict | None = None,
        via_parent: bool = False,
        temp_folder: Path | None = None,
        metrics_interval_s: float | None = None,
    ):
        self.marker = uuid.uuid4().hex
        self.service_file = folder / "results" / "services" / "tiny.json"
        self.server_log = folder / "logs" / "tiny.server.log"
        self.sessions_file = folder / "logs" / "tiny.sessions.jsonl"
        command = [
            sys.executable, "-m", "affalign.service.server", "--model", "tiny", "--source", str(model_dir),
            "--engine", json.dumps(engine or ENGINE), "--service-file", str(self.service_file),
            "--server-log", str(self.server_log), "--start-timeout", "600", "--stop-grace", "10",
            "--sessions-file", str(self.sessions_file),
        ]  # fmt: skip
        if metrics_interval_s is not None:
            command += ["--metrics-interval", str(metrics_interval_s)]
        # The system temporary folder as the wrapper and everything it starts see it.
        temp = {"TMPDIR": str(temp_folder)} if temp_folder is not None else {}
        if via_parent:  # a stand-in for Snakemake: the wrapper's parent, which a test can kill
            command = [sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])", *command]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONPATH=SOURCE, **temp, **{RUN_MARKER: self.marker}),
        )

    def state(self) -> dict:
        try:
            return json.loads(self.service_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait_until(self, *statuses: str) -> dict:
        deadline = time.monotonic() + 600
        while self.state().get("status") not in statuses:
            assert self.process.poll() is None or self.state().get("status") in statuses, (
                self.process.stdout.read()
            )
            assert time.monotonic() < deadline, self.server_log.read_text()[-3000:]
            time.sleep(0.5)
        return self.state()

    def engine_processes(self) -> list[str]:
        """The command lines of the engine processes (named VLLM::...) in the server's session."""
        session = self.state()["pid"]
        names = []
        for pid in session_members(session):
            with_name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            if with_name.startswith("VLLM::"):
                names.append(with_name)
        return names

    def left_behind(self) -> dict[int, str]:
        return wait_until_gone(RUN_MARKER, self.marker, timeout_s=120)


@pytest.mark.slow
def test_a_killed_server_leaves_no_engine_behind(tiny_llama, tmp_path):
    wrapper = Wrapper(tiny_llama, tmp_path)
    state = wrapper.wait_until("ready")
    assert wrapper.engine_processes(), "no engine process to watch: the test would prove nothing"
    os.kill(state["pid"], signal.SIGKILL)  # a server crash cannot be provoked for real on demand
    output, _ = wrapper.process.communicate(timeout=300)
    assert wrapper.process.returncode == 1, output
    assert "died with code -9" in wrapper.state()["error"]
    assert wrapper.left_behind() == {}
    assert "server stopped" in output


@pytest.fixture()
def system_temp():
    """A system temporary folder of the test's own (short: vLLM's socket paths must fit in
    107 bytes), given to the wrapper as TMPDIR."""
    folder = Path(tempfile.mkdtemp(prefix="affalign-t-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_killed_service_job_leaves_nothing_behind(tiny_llama, tmp_path, system_temp):
    wrapper = Wrapper(tiny_llama, tmp_path, temp_folder=system_temp)
    wrapper.wait_until("ready")
    assert wrapper.engine_processes()
    # vLLM's IPC sockets are in the server's private temporary folder, inside this one.
    assert any(entry.is_socket() for entry in system_temp.rglob("*")), list(system_temp.rglob("*"))
    wrapper.process.kill()  # what Snakemake does to every job of a group when one fails
    wrapper.process.wait()
    assert wrapper.left_behind() == {}
    assert list(system_temp.iterdir()) == []  # no socket, no folder: the guard removed them


@pytest.mark.slow
def test_a_session_records_how_full_its_server_was(tiny_llama, tmp_path, system_temp):
    wrapper = Wrapper(tiny_llama, tmp_path, temp_folder=system_temp, metrics_interval_s=0.5)
    wrapper.wait_until("ready")
    outputs = [tmp_path / "results" / f"shard-{index}.parquet" for index in range(2)]

    def shard(index: int) -> None:
        spec = ShardSpec(
            global_seed=1, model="tiny", kind="base", issue="covid-19", issue_name="COVID-19",
            topic="vaccines", topic_name="COVID-19 vaccines", prompt_type=PROMPT_TYPES[index], count=96,
        )  # fmt: skip
        options = ConsumerOptions(
            service_file=wrapper.service_file, server_log=wrapper.server_log,
            max_in_flight=12, server_start_timeout_s=60, request_timeout_s=300,
        )  # fmt: skip
        write_generation_shard(
            spec, model_info={"kind": "base"}, prompts_file=REPO / "resources/prompts.yaml",
            sampling=Sampling(24, 1.0, 1.0), output=outputs[index], options=options,
        )  # fmt: skip

    threads = [threading.Thread(target=shard, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wrapper.process.terminate()  # Snakemake, once the last consumer is done
    output, _ = wrapper.process.communicate(timeout=300)
    assert wrapper.process.returncode == 0, output
    assert all(path.exists() for path in outputs)
    account = write_job_account(
        outputs, [wrapper.sessions_file], tmp_path / "account.parquet", tmp_path / "account.csv"
    )
    row = account.row(0, named=True)
    assert row["max_num_seqs"] == ENGINE["max_num_seqs"]
    assert row["metrics_samples"] >= 2, row
    assert 0 < row["occupancy"] <= 1, row
    assert 0 <= row["low_occupancy_s"] <= row["generation_s"], row
    assert row["server_tokens_per_s"] > 0 and row["tokens_per_s"] > 0, row
    samples = [json.loads(line) for line in samples_file(wrapper.server_log).read_text().splitlines()]
    assert len(samples) == row["metrics_samples"] + row["metrics_missing"]
    assert max(sample.get("running", 0) for sample in samples) > 0
    # The last sample, taken as the session ended, counts every token the shards received.
    assert samples[-1]["generation_tokens"] == row["output_tokens"]
    print(f"occupancy {row['occupancy']:.3f}, {row['server_tokens_per_s']:.0f} tokens/s", row)
    assert wrapper.left_behind() == {}
    assert list(system_temp.iterdir()) == []


@pytest.mark.slow
def test_a_service_job_whose_snakemake_died_stops_its_server(tiny_llama, tmp_path):
    wrapper = Wrapper(tiny_llama, tmp_path, via_parent=True)
    wrapper.wait_until("ready")
    assert wrapper.engine_processes()
    wrapper.process.kill()  # the wrapper's parent
    wrapper.process.wait()
    assert wrapper.left_behind() == {}
    # The wrapper wrote to the pipe it shared with its parent: it stopped the server itself.
    assert "server stopped" in wrapper.process.stdout.read()


@pytest.mark.slow
def test_a_server_that_cannot_start_leaves_nothing_behind(tiny_llama, tmp_path):
    # A real start-up failure: vLLM refuses a context longer than the model's positions.
    wrapper = Wrapper(tiny_llama, tmp_path, engine={**ENGINE, "max_model_len": 100_000})
    state = wrapper.wait_until("failed")
    output, _ = wrapper.process.communicate(timeout=300)
    assert wrapper.process.returncode == 1, output
    assert "before it became healthy" in state["error"]
    assert wrapper.left_behind() == {}
