"""Per-patient matrix: largest/mean aggregation, incomplete lesions, ids, scaler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.features import WU_FEATURE_NAMES
from RadTyperLib.io import read_feature_table
from RadTyperLib.subtypes.data import Scaler, SubtypeWarning, patient_matrix


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for pid, vols in (("A", [100.0, 900.0, 300.0]), ("B", [50.0]), ("C", [10.0, 20.0])):
        for j, v in enumerate(vols):
            row = dict(zip(WU_FEATURE_NAMES, rng.normal(size=len(WU_FEATURE_NAMES)), strict=True))
            row.update(burden_volume_mm3=v, lesion=f"{pid}{j}", patient=pid, cancer_type="lung")
            rows.append(row)
    return pd.DataFrame(rows)


def test_largest_and_mean():
    t = _table()
    pm = patient_matrix(t)
    assert pm.patients == ["A", "B", "C"] and pm.x.shape == (3, 313)
    assert pm.source_rows.tolist() == [1, 3, 5]
    np.testing.assert_array_equal(pm.x[0], t.loc[1, list(WU_FEATURE_NAMES)].to_numpy(float))
    assert pm.meta.loc["A", "n_lesions"] == 3 and pm.meta.loc["C", "cancer_type"] == "lung"
    mean = patient_matrix(t, aggregation="mean")
    np.testing.assert_allclose(mean.x[0], t.loc[0:2, list(WU_FEATURE_NAMES)].to_numpy(float).mean(0))
    assert mean.source_rows.tolist() == [-1, 3, -1]


def test_incomplete_lesions_dropped_with_warning():
    t = _table()
    t.loc[1, "region_tc_tim_correl"] = np.nan  # A's largest lesion → the next largest is used
    t.loc[3, "shape_energy_l02"] = np.nan  # B's only lesion → B dropped
    with pytest.warns(SubtypeWarning) as rec:
        pm = patient_matrix(t)
    messages = " | ".join(str(w.message) for w in rec)
    assert "1 patients dropped" in messages and "(B)" in messages and "lost lesions" in messages
    assert pm.patients == ["A", "C"] and pm.dropped == ["B"] and pm.source_rows[0] == 2
    with pytest.warns(SubtypeWarning) as rec:
        pm = patient_matrix(t, allow_missing=True)
    assert "predicted from the incomplete features (B)" in " | ".join(str(w.message) for w in rec)
    assert pm.patients == ["A", "B", "C"] and np.isnan(pm.x[1]).sum() == 1


def test_missing_columns_and_bad_values():
    t = _table().drop(columns=["shape_energy_l03", "region_tim_pm5_correl"])
    with pytest.raises(InputError, match=r"trained on other features: 2 of its 313.*shape_energy_l03"):
        patient_matrix(t)
    t = _table()
    t["shape_energy_l03"] = t["shape_energy_l03"].astype(object)
    t.loc[0, "shape_energy_l03"] = "abc"
    with pytest.raises(InputError, match=r"non-numeric.*shape_energy_l03"):
        patient_matrix(t)
    with pytest.raises(InputError, match="aggregation"):
        patient_matrix(_table(), aggregation="median")


def test_ids_without_patient_column(tmp_path):
    t = _table().drop(columns=["patient"])
    pm = patient_matrix(t)
    assert pm.patients == ["A0", "A1", "A2", "B0", "C0", "C1"]
    path = tmp_path / "f.csv"
    _table().assign(patient=["007"] * 3 + ["8"] + ["9"] * 2).to_csv(path, index=False)
    assert patient_matrix(read_feature_table(path)).patients == ["007", "8", "9"]
    with pytest.raises(InputError, match="not found"):
        read_feature_table(tmp_path / "none.csv")


def test_scaler():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    s = Scaler.fit(x)
    z = s.transform(x)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-15)
    np.testing.assert_allclose(z[:, [0, 2]].std(0, ddof=1), 1.0)
    assert s.sd[1] == 1.0 and np.all(z[:, 1] == 0.0)
