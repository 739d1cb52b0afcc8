"""torch for RadTyper's U-Net inside Slicer: always from the PyTorch extension (``PyTorchUtils``), never pip.

The PyTorch extension installs the torch build that matches the machine (CUDA version or CPU) with
``PyTorchUtilsLogic().installTorch``, as SlicerTotalSegmentator and SlicerMONAIAuto3DSeg do. Every U-Net
action of the Slicer modules calls :func:`ensure_torch` first. No Qt: tested with a stand-in module.
"""

from __future__ import annotations

import importlib
from typing import Any

from .lesions_logic import ComponentMissingError

#: Oldest torch the U-Net code runs with.
MINIMUM_TORCH = "2.1"


def ensure_torch(minimum_version: str = MINIMUM_TORCH, *, ask: bool = True) -> Any:
    """Import torch; if it is missing, ask the PyTorch extension to install it (it asks the user first).

    Raises:
        ComponentMissingError: the PyTorch extension is not installed, or torch was not installed.
    """
    try:
        pytorch_utils = importlib.import_module("PyTorchUtils")
    except ImportError:
        raise ComponentMissingError(
            "The U-Net needs the PyTorch extension: install 'PyTorch' from the Extensions Manager and restart "
            "Slicer"
        ) from None
    logic = pytorch_utils.PyTorchUtilsLogic()
    if logic.torchInstalled():
        return importlib.import_module("torch")
    torch = logic.installTorch(askConfirmation=ask, torchVersionRequirement=f">={minimum_version}")
    if torch is None:
        raise ComponentMissingError("PyTorch was not installed: the U-Net cannot run without it")
    return torch
