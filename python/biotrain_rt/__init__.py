"""biotrain-rt: on-device training of small biosignal models.

The C core (``biotrain_rt._core``) holds the kernels, the memory planner and
the training loop; this package is its Python face::

    import biotrain_rt as brt
    net = brt.models.mibminet()
    trainer = brt.Trainer(net, optimizer=brt.SGD(lr=1e-3, momentum=0.9), strategy="full", batch_size=8)
    print(trainer.plan.peak_bytes, trainer.plan.summary())
    loss = trainer.step(x, y)
"""
from . import _core  # noqa: F401
from . import export, firmware, models
from .network import Layer, Network
from .optim import SGD, Adam
from .plan import PlanInfo
from .torch_io import from_torch, to_torch
from .onnx_io import from_onnx, to_onnx
from .train import FineTune, Trainer
from . import lora  # noqa: E402
from .calibrate import calibrate  # noqa: E402  (brt.calibrate(...); the module stays importable by name)

__version__ = "0.1.0"

__all__ = ["Network", "Layer", "Trainer", "SGD", "Adam", "PlanInfo", "from_torch", "to_torch", "from_onnx", "to_onnx", "models", "export", "firmware", "calibrate", "FineTune", "lora"]
