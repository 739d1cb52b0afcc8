"""Autoencoder 313 → 150 → 10 → 150 → 313 (Wu et al. Extended Data Fig. 3; torch, CPU, deterministic).

Architecture and training (methods.md §1.5; the paper's chosen grid values in bold there):

* encoder ``Linear(p, 150) → ReLU → Linear(150, 10)``: the **bottleneck is linear** (its activation is not
  reported; linear keeps the 10 codes unbounded and sign-symmetric, as PCA scores would be);
* decoder ``Linear(10, 150) → ReLU → Linear(150, p)``: **linear output**, because the inputs are z-scores
  (unbounded) — the paper's alternative loss, binary cross-entropy, would need [0, 1]-scaled inputs;
* loss MSE, optimiser Adam (lr 1e-3), mini-batches of 32 shuffled each epoch, default PyTorch
  initialisation; at most 500 epochs;
* early stopping on an internal validation split (15 % of the discovery patients, ≥ 2): training stops
  after 20 epochs (patience) without a validation-MSE decrease larger than 1e-5, and the weights of the best
  epoch are kept.

Determinism: everything runs under ``torch.random.fork_rng`` with ``torch.manual_seed(seed)``,
``torch.use_deterministic_algorithms(True)`` and one intra-op thread (all restored afterwards); the split
and the batch order come from seeded generators. The same seed, data and torch version give bit-identical
weights on CPU.

The trained encoder is applied unchanged to new data by :func:`encode` — a numpy evaluation (float64) of
the saved weights; the weights file is read with numpy too (:func:`read_torch_state`), so predicting and
embedding with a saved model need no torch (only training does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import RadTyperError

TORCH_MISSING = (
    "torch is needed for subtype discovery: pip install torch==2.13.0, or the PyTorch extension in Slicer"
)


def import_torch():
    """``torch``, or a :class:`RadTyperError` telling how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise RadTyperError(TORCH_MISSING) from exc
    return torch


@dataclass
class AutoencoderSettings:
    """Hyper-parameters (defaults = the paper's chosen values where reported, documented choices otherwise)."""

    hidden: int = 150
    bottleneck: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 500
    patience: int = 20
    min_delta: float = 1e-5
    validation_fraction: float = 0.15
    seed: int = 0


@dataclass
class AutoencoderModel:
    """Trained weights (numpy, state-dict names) and the training history."""

    state: dict[str, np.ndarray]
    settings: AutoencoderSettings
    n_features: int
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0

    def info(self) -> dict:
        """JSON-able description (no weights)."""
        h = self.history
        return {
            "architecture": f"{self.n_features}-{self.settings.hidden}-{self.settings.bottleneck}-"
            f"{self.settings.hidden}-{self.n_features}",
            "activations": "ReLU hidden layers, linear bottleneck, linear output",
            "settings": asdict(self.settings),
            "epochs_run": len(h.get("train_loss", [])),
            "best_epoch": self.best_epoch,
            "best_validation_mse": h["val_loss"][self.best_epoch - 1] if h.get("val_loss") else None,
            "final_train_mse": h["train_loss"][-1] if h.get("train_loss") else None,
        }


def _module(torch, n_features: int, s: AutoencoderSettings):
    nn = torch.nn

    class Autoencoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Linear(n_features, s.hidden), nn.ReLU(), nn.Linear(s.hidden, s.bottleneck)
            )
            self.decoder = nn.Sequential(
                nn.Linear(s.bottleneck, s.hidden), nn.ReLU(), nn.Linear(s.hidden, n_features)
            )

        def forward(self, x):
            return self.decoder(self.encoder(x))

    return Autoencoder()


def train_autoencoder(
    z: np.ndarray,
    settings: AutoencoderSettings | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> AutoencoderModel:
    """Train on standardised features ``z`` (patients × features) → :class:`AutoencoderModel`."""
    torch = import_torch()
    s = settings or AutoencoderSettings()
    z = np.asarray(z, dtype=np.float32)
    n, p = z.shape
    if n < 10:
        raise RadTyperError(f"the autoencoder needs at least 10 patients, got {n}")
    if not np.isfinite(z).all():
        raise RadTyperError("the autoencoder input contains NaN or infinite values")
    rng = np.random.default_rng(s.seed)
    perm = rng.permutation(n)
    n_val = max(2, round(s.validation_fraction * n))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            model = _module(torch, p, s)
            opt = torch.optim.Adam(model.parameters(), lr=s.learning_rate)
            loss_fn = torch.nn.MSELoss()
            xt = torch.from_numpy(z[train_idx])
            xv = torch.from_numpy(z[val_idx])
            gen = torch.Generator().manual_seed(s.seed)
            best, best_epoch, best_state, waited = np.inf, 0, None, 0
            for epoch in range(1, s.max_epochs + 1):
                model.train()
                order = torch.randperm(len(xt), generator=gen)
                total = 0.0
                for start in range(0, len(xt), s.batch_size):
                    batch = xt[order[start : start + s.batch_size]]
                    opt.zero_grad()
                    loss = loss_fn(model(batch), batch)
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(batch)
                model.eval()
                with torch.no_grad():
                    val = float(loss_fn(model(xv), xv))
                history["train_loss"].append(total / len(xt))
                history["val_loss"].append(val)
                if val < best - s.min_delta:
                    best, best_epoch, waited = val, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    waited += 1
                if progress is not None and epoch % 10 == 0:
                    progress(epoch / s.max_epochs, f"autoencoder epoch {epoch}: validation MSE {val:.4f}")
                if waited >= s.patience:
                    break
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
    if best_state is None:
        raise RadTyperError("autoencoder training diverged (validation loss is not finite)")
    state = {k: v.numpy().copy() for k, v in best_state.items()}
    return AutoencoderModel(state, s, p, history, best_epoch)


def encode(state: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Bottleneck codes of standardised features ``z`` with the encoder weights in ``state`` (numpy)."""
    z = np.asarray(z, dtype=np.float64)
    w0, b0 = (
        np.asarray(state["encoder.0.weight"], np.float64),
        np.asarray(state["encoder.0.bias"], np.float64),
    )
    w2, b2 = (
        np.asarray(state["encoder.2.weight"], np.float64),
        np.asarray(state["encoder.2.bias"], np.float64),
    )
    return np.maximum(z @ w0.T + b0, 0.0) @ w2.T + b2


def reconstruct(state: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Decoder(encoder(z)) in numpy (for reconstruction-error checks)."""
    code = encode(state, z)
    w0, b0 = (
        np.asarray(state["decoder.0.weight"], np.float64),
        np.asarray(state["decoder.0.bias"], np.float64),
    )
    w2, b2 = (
        np.asarray(state["decoder.2.weight"], np.float64),
        np.asarray(state["decoder.2.bias"], np.float64),
    )
    return np.maximum(code @ w0.T + b0, 0.0) @ w2.T + b2


def save_state(state: dict[str, np.ndarray], path) -> None:
    """Write the weights as a torch state dict (``torch.save``).

    Written through an open file so the bytes do not depend on the file name (``torch.save`` names its zip
    archive after a path it is given): rebuilding a bundle with the same seed gives an identical file.
    """
    torch = import_torch()
    with open(path, "wb") as fh:
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, fh)


#: Storage classes of a torch file → numpy dtypes (what :func:`read_torch_state` accepts).
_TORCH_STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


def read_torch_state(path) -> dict[str, np.ndarray]:
    """Read a torch state dict file (``torch.save`` zip format) with numpy only: no torch needed.

    Only tensors (``torch._utils._rebuild_tensor_v2`` over typed storages) in a dict / OrderedDict are
    accepted — any other object in the pickle is refused, so no code is run. Values equal ``torch.load``'s
    exactly (tested).

    Raises:
        InputError: not a torch zip file, or it holds anything but plain tensors.
    """
    import collections
    import pickle
    import zipfile
    from pathlib import Path

    from ..errors import InputError

    p = Path(path)
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{p}: not a torch weights file ({exc})") from None
    with zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise InputError(f"{p}: not a torch weights file (no data.pkl)")
        prefix = pkl[: -len("data.pkl")]
        order = zf.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
        endian = "<" if order == "little" else ">"

        def rebuild(storage, offset, size, stride, *_ignored):
            item = storage.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(
                storage[offset:], shape=tuple(size), strides=tuple(int(s) * item for s in stride)
            )
            return np.array(view, dtype=storage.dtype.newbyteorder("="))

        class _Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str):
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if module == "torch" and name in _TORCH_STORAGE_DTYPES:
                    return name
                raise InputError(f"{p}: unexpected object {module}.{name} in the weights file (refused)")

            def persistent_load(self, pid):
                kind, storage_type, key, _location, numel = pid
                if kind != "storage" or storage_type not in _TORCH_STORAGE_DTYPES:
                    raise InputError(f"{p}: unexpected storage {pid!r} in the weights file")
                dtype = np.dtype(endian + _TORCH_STORAGE_DTYPES[storage_type])
                return np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=dtype, count=int(numel))

        import io

        try:
            raw = _Unpickler(io.BytesIO(zf.read(pkl))).load()
        except (pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError) as exc:
            raise InputError(f"{p}: unreadable torch weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, np.ndarray) for v in raw.values()):
        raise InputError(f"{p}: the weights file does not hold a state dict of tensors")
    return {str(k): v for k, v in raw.items()}


def load_state(path) -> dict[str, np.ndarray]:
    """Read a state dict written by :func:`save_state` — with numpy only (:func:`read_torch_state`), so that
    prediction and embedding need no torch."""
    return read_torch_state(path)
