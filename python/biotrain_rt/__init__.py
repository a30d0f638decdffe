"""biotrain-rt: on-device training of small biosignal models.

The C core (``biotrain_rt._core``) holds the kernels, the memory planner and
the training loop; this package is its Python face.
"""
from . import _core  # noqa: F401

__version__ = "0.1.0"
