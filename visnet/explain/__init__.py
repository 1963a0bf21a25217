"""Per-atom explanations of predictions: ``explain``, ``Explanation``, ``write_explanation``."""

from visnet.explain.explain import explain
from visnet.explain.explanation import Explanation

__all__ = ["Explanation", "explain"]
