"""Stage-independent statistics, shared by the align and opinions stages.

Pure functions (arrays in, numbers out, no I/O, no knowledge of any table or stage); the
science that belongs to one stage stays there (the Jensen–Shannon bias correction in
``affalign.align``; W1, consistency and the steerability slope in ``affalign.opinions``).

* :mod:`~affalign.stats.intervals` — percentile intervals of replicates (vectorised over
  leading axes) and the Wilson interval of a proportion;
* :mod:`~affalign.stats.sign_flip` — the paired sign-flip (permutation) test, exact by
  enumeration where that is cheap, and its smallest attainable p-value;
* :mod:`~affalign.stats.multiplicity` — Holm and Benjamini–Hochberg adjusted p-values.

Stages import from this package (``from affalign.stats import holm``), never its modules.
"""

from affalign.stats.intervals import percentile_interval, wilson_interval
from affalign.stats.multiplicity import benjamini_hochberg, holm
from affalign.stats.sign_flip import (
    EXACT_SIGN_VECTORS,
    SignFlipResult,
    min_attainable_sign_flip_p,
    sign_flip_p_values,
    sign_flip_test,
)

__all__ = [
    "EXACT_SIGN_VECTORS",
    "SignFlipResult",
    "benjamini_hochberg",
    "holm",
    "min_attainable_sign_flip_p",
    "percentile_interval",
    "sign_flip_p_values",
    "sign_flip_test",
    "wilson_interval",
]
