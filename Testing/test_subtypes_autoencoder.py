"""Autoencoder: architecture, determinism, numpy encoder = torch encoder, torch restored, torch missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from RadTyperLib.errors import RadTyperError
from RadTyperLib.subtypes.autoencoder import (
    TORCH_MISSING,
    AutoencoderSettings,
    encode,
    load_state,
    reconstruct,
    save_state,
    train_autoencoder,
)

torch = pytest.importorskip("torch")


def _data(n: int = 80, p: int = 313, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4))
    return latent @ rng.normal(size=(4, p)) + 0.3 * rng.normal(size=(n, p))


@pytest.fixture(scope="module")
def trained():
    z = _data()
    s = AutoencoderSettings(max_epochs=60, patience=10, seed=3)
    return z, s, train_autoencoder(z, s)


def test_architecture_and_history(trained):
    z, s, model = trained
    shapes = {k: v.shape for k, v in model.state.items()}
    assert shapes == {
        "encoder.0.weight": (150, 313),
        "encoder.0.bias": (150,),
        "encoder.2.weight": (10, 150),
        "encoder.2.bias": (10,),
        "decoder.0.weight": (150, 10),
        "decoder.0.bias": (150,),
        "decoder.2.weight": (313, 150),
        "decoder.2.bias": (313,),
    }
    h = model.history
    assert 1 <= model.best_epoch <= len(h["val_loss"]) <= s.max_epochs
    assert h["val_loss"][model.best_epoch - 1] == min(h["val_loss"])
    assert h["train_loss"][-1] < h["train_loss"][0]
    info = model.info()
    assert info["architecture"] == "313-150-10-150-313" and "linear bottleneck" in info["activations"]
    # a rank-4 signal (variance 4 per entry) + noise (sd 0.3): a 10-d bottleneck reconstructs down to the noise
    # floor 0.09 / 4.09 = 0.022 of the variance; training seeds 0-9 give 0.021-0.025 (study_test_spread.py
    # --test autoencoder); bound: 3 × the noise floor (no machine-specific figure)
    assert ((reconstruct(model.state, z) - z) ** 2).mean() < 0.066 * ((z - z.mean(0)) ** 2).mean()


def test_deterministic_and_torch_state_restored(trained):
    z, s, model = trained
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    rng_state = torch.random.get_rng_state()
    again = train_autoencoder(z, s)
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    for k in model.state:
        assert np.array_equal(model.state[k], again.state[k])
    other = train_autoencoder(z, AutoencoderSettings(max_epochs=5, seed=4))
    assert not np.array_equal(other.state["encoder.0.weight"], model.state["encoder.0.weight"])


def test_numpy_encoder_equals_torch_and_roundtrip(trained, tmp_path):
    z, _, model = trained
    lin0 = torch.nn.Linear(313, 150)
    lin2 = torch.nn.Linear(150, 10)
    with torch.no_grad():
        lin0.weight.copy_(torch.from_numpy(model.state["encoder.0.weight"]))
        lin0.bias.copy_(torch.from_numpy(model.state["encoder.0.bias"]))
        lin2.weight.copy_(torch.from_numpy(model.state["encoder.2.weight"]))
        lin2.bias.copy_(torch.from_numpy(model.state["encoder.2.bias"]))
        ref = lin2(torch.relu(lin0(torch.from_numpy(z.astype(np.float32))))).numpy()
    codes = encode(model.state, z)
    assert codes.shape == (len(z), 10)
    np.testing.assert_allclose(codes, ref, atol=1e-4)  # float64 vs float32 sums; seeds 0-9: ≤ 5.7e-6
    save_state(model.state, tmp_path / "ae.pt")
    loaded = load_state(tmp_path / "ae.pt")
    assert all(np.array_equal(loaded[k], model.state[k]) for k in model.state)


def test_bad_input():
    with pytest.raises(RadTyperError, match="at least 10"):
        train_autoencoder(np.zeros((5, 313)))
    bad = _data(20)
    bad[0, 0] = np.nan
    with pytest.raises(RadTyperError, match="NaN"):
        train_autoencoder(bad)


def test_torch_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(RadTyperError) as exc:
        train_autoencoder(_data(20))
    assert str(exc.value) == TORCH_MISSING
    assert "pip install torch==2.13.0" in TORCH_MISSING and "PyTorch extension in Slicer" in TORCH_MISSING
