"""The generate stage: one shard of posts per model × issue × topic × prompt type.

Reads the prompt templates (``prompts:`` in the config) and the model's service file;
writes ``results/generated/{model}/{issue}/{topic}/{prompt_type}.parquet`` and keeps a
copy of every finished shard in the shard store (``results/.shard-store/generated/{model}/``). Rule
``generate`` (``workflow/rules/generate.smk``) drives
:func:`~affalign.generate.shards.write_generation_shard`.

* :mod:`~affalign.generate.prompts` — template pools, seeds and template choice;
* :mod:`~affalign.generate.shards` — requests through the service, the shard and its cache;
* :mod:`~affalign.generate.postprocess` — cleaning, empty / degenerate / refusal flags;
* :mod:`~affalign.generate.settings` — what a shard depends on, from the config.
"""

from affalign.generate.prompts import DEFAULT_PROMPT_TYPE, PromptError, load_templates
from affalign.generate.settings import GenerationSettings

__all__ = ["DEFAULT_PROMPT_TYPE", "GenerationSettings", "PromptError", "load_templates"]
