"""discover --validation-cohort: whole cohorts held out, purity as Wu et al. (own clustering vs prediction)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.subtypes import discover
from RadTyperLib.subtypes.synthetic import planted_cohort

pytest.importorskip("sklearn")

#: Fast settings: clustering of the z-scores (no autoencoder), 40 repetitions, k = 2…6.
FAST = {
    "embedding": "none",
    "reps": 40,
    "ks": (2, 3, 4, 5, 6),
    "igp_permutations": 0,
    "purity_repeats": 0,
    "clf_max_iter": 30,
    "seed": 0,
}


def multi_cohort(held_out_subtypes: tuple[int, ...], seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Patients of 5 planted subtypes in 3 cohorts: A and B hold subtypes 0, 1, 2; C (the largest) holds
    ``held_out_subtypes``. Returns the per-lesion table (column ``cohort``) and the truth per patient."""
    table, truth = planted_cohort(900, 5, separation=1.5, factor_sd=0.5, seed=seed)
    truth = pd.Series(truth, index=table["patient"].to_numpy())
    rng = np.random.default_rng(seed)
    cohort = np.full(len(truth), "", dtype=object)
    for t in range(5):
        idx = np.flatnonzero(truth.to_numpy() == t)
        rng.shuffle(idx)
        if t in held_out_subtypes:
            cohort[idx[:70]] = "C"
        if t in (0, 1, 2):
            cohort[idx[70:110]] = "A"
            cohort[idx[110:150]] = "B"
    keep = cohort != ""
    table = table.loc[keep].assign(cohort=cohort[keep]).reset_index(drop=True)
    return table, truth[keep]


@pytest.fixture(scope="module")
def same_subtypes(tmp_path_factory):
    table, truth = multi_cohort((0, 1, 2))
    out = tmp_path_factory.mktemp("same")
    return table, truth, discover(table, out, validation_cohort="cohort", **FAST), out


@pytest.fixture(scope="module")
def new_subtypes(tmp_path_factory):
    table, truth = multi_cohort((0, 1, 3, 4))
    out = tmp_path_factory.mktemp("new")
    return table, truth, discover(table, out, validation_cohort="cohort", **FAST), out


def test_whole_cohort_held_out(same_subtypes):
    val = same_subtypes[2]["validation"]
    assert val["split"] == "whole cohorts held out" and val["held_out_cohorts"] == ["C"]
    assert val["n_validation"] == 210 and val["n_discovery"] == 240  # C = 3 × 70, A + B = 6 × 40
    split = pd.read_csv(same_subtypes[3] / "split.csv", dtype=str)
    held = set(same_subtypes[0].loc[same_subtypes[0]["cohort"] == "C", "patient"])
    assert set(split.loc[split["set"] == "validation", "patient"]) == held


def test_planted_subtypes_reproduced(same_subtypes, new_subtypes):
    from sklearn.metrics import adjusted_rand_score

    for _table, truth, _res, out in (same_subtypes, new_subtypes):
        labels = pd.read_csv(out / "labels.csv", dtype={"patient": str}).set_index("patient")["subtype"]
        assert adjusted_rand_score(truth, labels.loc[truth.index]) >= 0.9  # final subtypes, all patients
    res = same_subtypes[2]
    val = res["validation"]
    assert val["discovery"]["chosen_k"] == 3 and val["validation"]["chosen_k"] == 3 and res["k"] == 3
    # the held-out cohort clustered on its own vs the discovery model's prediction (Wu et al.'s purity)
    # seeds 0-4 (study_test_spread.py --test cohort-validation): purity 0.990-1, adjusted Rand 0.971-1
    assert res["purity"]["purity"] >= 0.95 and res["purity"]["adjusted_rand"] >= 0.9
    assert val["transfer"]["at_discovery_k"]["adjusted_rand"] >= 0.9


def test_purity_drops_with_subtypes_the_discovery_cohorts_lack(same_subtypes, new_subtypes):
    """Cohort C has two subtypes (3, 4) that A and B lack: the discovery model cannot predict them."""
    same, new = same_subtypes[2], new_subtypes[2]
    assert new["validation"]["discovery"]["chosen_k"] == 3  # A + B hold 3 subtypes
    assert new["validation"]["validation"]["chosen_k"] == 4  # C on its own: 4
    assert (
        new["purity"]["purity"] <= 0.8 < same["purity"]["purity"]
    )  # seeds 0-4: new 0.557-0.668, drop ≥ 0.495
    assert new["purity"]["adjusted_rand"] <= same["purity"]["adjusted_rand"] - 0.2


def test_validation_cohort_errors(tmp_path):
    table, _ = multi_cohort((0, 1, 2))
    with pytest.raises(InputError, match="no column 'centre'"):
        discover(table, tmp_path / "a", validation_cohort="centre", **FAST)
    with pytest.raises(InputError, match="no patient of cohort"):
        discover(table, tmp_path / "b", validation_cohort="cohort", validation_cohorts=["Z"], **FAST)
    with pytest.raises(InputError, match="at least 2 cohorts"):
        discover(table.assign(cohort="A"), tmp_path / "c", validation_cohort="cohort", **FAST)
