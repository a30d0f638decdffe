"""Training: one :class:`Trainer` for both number formats; the format is a
strategy object (:mod:`.formats`) that says how data, parameters, losses and
scales cross between Python and the C core."""
from .formats import FixedFormat, Float32Format, NumberFormat, make_format
from .strategy import FineTune, Strategy, resolve_masks, resolve_strategy
from .trainer import Trainer

__all__ = ["Trainer", "NumberFormat", "Float32Format", "FixedFormat", "make_format", "Strategy", "FineTune", "resolve_strategy", "resolve_masks"]
