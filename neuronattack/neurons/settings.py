"""What an analysis and its atlas are asked to do, with their defaults: the one source that
``neuronattack analyze``'s options, ``pipeline.analyse_into`` and the library's functions read them
from.

Importing this module loads no torch: the CLI builds its options from it at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

# The traced pass's dtypes by name (``neurons.analysis.PRECISIONS`` maps them to torch's).
PRECISION_NAMES = ("fp32", "bf16", "fp16")
SOLVERS = ("omp", "nn-lasso")  # the word decomposition: the paper's OMP, or non-negative Lasso
DEFAULT_COMMON_WORDS = 30000  # the vocabulary's size when ``common`` names no number
DEFAULT_VOCABULARY = f"common:{DEFAULT_COMMON_WORDS}"
DEFAULT_NONZEROS = 128  # words per neuron
DEFAULT_BATCH_SIZE = 32  # images per traced batch


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that changes the result; a run resumes only under identical settings."""

    layers: tuple[int, ...]
    convention: str = "centred"
    top_k: int = 100
    precision: str = "fp32"
