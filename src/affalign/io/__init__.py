"""File edges shared by every stage: input tables in, parquet with provenance out.

* :mod:`~affalign.io.tables` — the one reader of user tables (CSV, parquet, JSON lines).
* :mod:`~affalign.io.parquet` — parquet tables that carry their provenance (metadata key
  ``affalign``), and CSV copies for reading.
* :mod:`~affalign.io.files` — the one atomic writer, file and content hashes, seeds.
* :mod:`~affalign.io.jobs` — how a job begins (its interpreter in its log, a missing module
  in one line), logs to its rule's ``log:``, warns and fails (a data error in one line).
* :mod:`~affalign.io.accelerator` — what a model-side job runs on (GPU, driver, CUDA, torch,
  vLLM) and the check that stops a GPU job whose environment cannot use the GPU.

Used by every rule; writes nothing by itself.
"""

from affalign.io.accelerator import (
    WrongAccelerator,
    accelerator_problem,
    accelerator_provenance,
    allocated_gpus,
    check_accelerator,
    probe_runtime,
)
from affalign.io.files import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    content_sha256,
    derive_seed,
    file_sha256,
    place_file,
)
from affalign.io.jobs import (
    is_data_error,
    missing_module,
    pid_alive,
    print_job_warning,
    run_logged,
    start_job,
    traceback_path,
)
from affalign.io.parquet import (
    DEFAULT_PROMPT_TYPE,
    join_affect,
    labels_of,
    read_provenance,
    write_csv,
    write_table,
)
from affalign.io.tables import (
    TableError,
    column_names,
    read_table,
    table_format,
    table_has_rows,
    table_schema,
)

__all__ = [
    "DEFAULT_PROMPT_TYPE",
    "TableError",
    "WrongAccelerator",
    "accelerator_problem",
    "accelerator_provenance",
    "allocated_gpus",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_accelerator",
    "column_names",
    "content_sha256",
    "derive_seed",
    "file_sha256",
    "is_data_error",
    "join_affect",
    "labels_of",
    "missing_module",
    "pid_alive",
    "place_file",
    "print_job_warning",
    "probe_runtime",
    "read_provenance",
    "read_table",
    "run_logged",
    "start_job",
    "table_format",
    "table_has_rows",
    "table_schema",
    "traceback_path",
    "write_csv",
    "write_table",
]
