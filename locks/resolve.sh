#!/usr/bin/env bash
# Re-resolve the locks for linux x86_64 and Python 3.11 (what compute and login nodes run),
# whatever machine this runs on, with uv's resolver and hashes for every file:
#
#   bash locks/resolve.sh              orchestration.txt and gpu-runtime.txt from plain PyPI
#   CUDA=12.9 bash locks/resolve.sh    gpu-runtime-cu129.txt (needs vLLM's and PyTorch's
#                                      wheel indexes, which PyPI-only machines cannot reach)
#
# uv comes from the development environment (requirements.lock) or UV=/path/to/uv. No pip
# configuration is read (--no-config, an explicit index), so local wheel folders of this
# machine cannot leak into a lock that a lab installs from PyPI.
set -euo pipefail
cd "$(dirname "$0")"
uv=${UV:-$(command -v uv || echo "$PWD/../.venv/bin/uv")}
common=(--no-config --python-platform x86_64-manylinux_2_28 --python-version 3.11
  --generate-hashes --annotation-style line --quiet
  --custom-compile-command "bash locks/resolve.sh")

if [[ "${CUDA:-13.0}" == 12.9 ]]; then
  vllm_version=$(sed -n 's/^vllm==\([^ ]*\).*/\1/p' gpu-runtime.txt)
  "$uv" pip compile "${common[@]}" gpu-runtime-cu129.in -o gpu-runtime-cu129.txt \
    --index-url https://pypi.org/simple \
    --extra-index-url "https://wheels.vllm.ai/${vllm_version}/cu129" \
    --extra-index-url https://download.pytorch.org/whl/cu129 \
    --index-strategy unsafe-best-match
  exit 0
fi

for name in orchestration gpu-runtime; do
  "$uv" pip compile "${common[@]}" --index-url https://pypi.org/simple "$name.in" -o "$name.txt"
  echo "locks/$name.txt: $(grep -c '^[A-Za-z]' "$name.txt") packages"
done
