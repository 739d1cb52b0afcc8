"""Report figures (non-empty PNGs of sensible size) and the self-contained HTML page."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from RadTyperLib.errors import InputError
from RadTyperLib.report import (
    ReportSection,
    consensus_order,
    km_summary_table,
    plot_consensus_cdf,
    plot_consensus_heatmap,
    plot_heterogeneity,
    plot_km,
    plot_subtype_heatmap,
    subtype_mean_z,
    write_html_report,
)


def _png_ok(path: Path, min_w: int = 300, min_h: int = 200) -> tuple[int, int]:
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 5000
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h
    assert float(np.std(img[..., :3])) > 0.01  # not a blank canvas
    return w, h


def _consensus(seed: int = 0, sizes=(12, 9, 7)) -> tuple[np.ndarray, np.ndarray]:
    """Block-structured consensus matrix with shuffled samples."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(1, len(sizes) + 1), sizes)
    same = labels[:, None] == labels[None, :]
    M = np.clip(np.where(same, 0.85, 0.1) + rng.normal(0, 0.05, same.shape), 0, 1)
    M = (M + M.T) / 2
    np.fill_diagonal(M, 1.0)
    perm = rng.permutation(labels.size)
    return M[np.ix_(perm, perm)], labels[perm]


@pytest.fixture(scope="module")
def km_result():
    pytest.importorskip("lifelines")
    from RadTyperLib.survival import kaplan_meier

    rng = np.random.default_rng(3)
    n = 150
    g = rng.integers(1, 4, n)
    t = rng.exponential(10 / g)
    c = rng.uniform(0, 25, n)
    df = pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int), "subtype": g})
    return kaplan_meier(df, "time", "event", "subtype")


@pytest.fixture(scope="module")
def heterogeneity_dir(tmp_path_factory) -> Path:
    """A real ``radtyper heterogeneity`` output (JSON + recovery-curve PNG) on a small synthetic table."""
    from RadTyperLib.heterogeneity import heterogeneity_report

    rng = np.random.default_rng(0)
    rows = []
    for p in range(4):
        for i in range(2 + p):
            rows.append({"lesion": f"L{i}", "site": "lung", "patient": f"P{p}"})
    table = pd.DataFrame(rows)
    for j in range(6):
        table[f"radiomics_f{j}"] = rng.lognormal(0, 0.5, len(table))
    table.loc[len(table)] = {"lesion": "L0", "site": "lung", "patient": "P_single", "radiomics_f0": 1.0}
    table = table.fillna(1.0)
    out = tmp_path_factory.mktemp("het")
    heterogeneity_report(table, out, features=None, n_draws=30, seed=1)
    return out


def test_consensus_order_groups_clusters():
    M, labels = _consensus()
    order = consensus_order(M, labels)
    assert sorted(order) == list(range(labels.size))
    assert list(labels[order]) == sorted(labels)  # contiguous clusters in natural order


def test_plot_consensus_heatmap(tmp_path):
    M, labels = _consensus()
    path = plot_consensus_heatmap(M, labels, tmp_path / "consensus.png")
    _png_ok(path)
    with pytest.raises(InputError, match="labels"):
        plot_consensus_heatmap(M, labels[:-1], tmp_path / "x.png")


def test_plot_consensus_cdf_accepts_matrices_pairs_and_values(tmp_path):
    cdfs = {2: _consensus(1, (14, 14))[0], 3: _consensus(2)[0]}  # matrices
    x = np.linspace(0, 1, 50)
    cdfs[4] = (x, x**2)  # (x, CDF)
    cdfs[5] = np.random.default_rng(0).random(300)  # consensus values
    w, h = _png_ok(plot_consensus_cdf(cdfs, {2: 0.6, 3: 0.25, 4: 0.05, 5: 0.01}, tmp_path / "cdf.png"))
    assert w > h  # two panels side by side
    _png_ok(plot_consensus_cdf(cdfs, [0.6, 0.25, 0.05, 0.01], tmp_path / "cdf2.png"))
    with pytest.raises(InputError, match="Δ-area"):
        plot_consensus_cdf(cdfs, [0.6], tmp_path / "bad.png")


def test_plot_km(tmp_path, km_result):
    _png_ok(plot_km(km_result, tmp_path / "km.png", time_unit="months"))
    summary = km_summary_table(km_result)
    assert list(summary.columns) == ["subtype", "n", "events", "median"] and summary["n"].sum() == 150


def test_plot_subtype_heatmap(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 2, 3], 20)
    table = pd.DataFrame(
        {f"shape_f{j}": rng.normal(labels * (j % 3 == 0), 1.0) for j in range(8)} | {"lesion": "x"}
    )
    means = subtype_mean_z(table, labels, None)
    assert list(means.columns) == [1, 2, 3] and len(means) == 8
    assert means.loc["shape_f0", 3] > 0.8 > -0.8 > means.loc["shape_f0", 1]  # planted effect
    np.testing.assert_allclose(means.mean(axis=1), 0, atol=1e-12)  # equal-size groups
    _png_ok(plot_subtype_heatmap(table, labels, ["shape_f0", "shape_f1", "shape_f3"], tmp_path / "sub.png"))
    with pytest.raises(InputError, match="not in the table"):
        plot_subtype_heatmap(table, labels, ["nope"], tmp_path / "x.png")


def test_plot_heterogeneity_from_json_and_dict(tmp_path, heterogeneity_dir):
    _png_ok(plot_heterogeneity(heterogeneity_dir / "heterogeneity.json", tmp_path / "het.png"))
    _png_ok(plot_heterogeneity(heterogeneity_dir, tmp_path / "het_dir.png"))
    d = {"patients": {"A": {"max_tumoral_divergence": 0.3, "average_tumoral_heterogeneity": 0.1}, "B": {}}}
    _png_ok(plot_heterogeneity(d, tmp_path / "het2.png"))


def test_html_report_references_every_png_and_nothing_external(tmp_path, km_result, heterogeneity_dir):
    out = tmp_path / "report"
    M, labels = _consensus()
    figs = {
        "consensus": plot_consensus_heatmap(M, labels, out / "consensus.png"),
        "km": plot_km(km_result, out / "km.png"),
        "het": plot_heterogeneity(heterogeneity_dir, out / "heterogeneity.png"),
    }
    recovery = heterogeneity_dir / "recovery_curves.png"  # reused from the heterogeneity output
    nasty = pd.DataFrame({"term": ["<script>alert(1)</script>", "a & b"], "hr": [2.0, np.nan]})
    sections = [
        ReportSection(
            "Subtypes <k=3>",
            "Consensus clustering.\n\nSecond paragraph & more.",
            [(figs["consensus"], "Consensus matrix")],
        ),
        {
            "title": "Survival",
            "figures": [{"path": "km.png", "caption": "KM by subtype"}],
            "tables": [("Cox", nasty), km_summary_table(km_result)],
        },
        {"title": "Heterogeneity", "figures": [figs["het"], (recovery, "Recovery curves (Henry et al.)")]},
    ]
    index = write_html_report(out, sections, title="Cohort <test>")
    text = index.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert sorted(srcs) == sorted(
        ["consensus.png", "km.png", "heterogeneity.png", "figures/recovery_curves.png"]
    )
    for src in srcs:  # every reference resolves to a real PNG inside the folder
        _png_ok(out / src)
    pngs = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert pngs == set(srcs)  # and every PNG is referenced
    assert not re.search(r"(https?:)?//", text.replace("<!DOCTYPE html>", ""))  # no external URL
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Cohort &lt;test&gt;" in text and "Subtypes &lt;k=3&gt;" in text and "a &amp; b" in text
    assert "<caption>Cox</caption>" in text and text.count("<section") == 3
    with pytest.raises(InputError, match="figure file not found"):
        write_html_report(out, [{"title": "x", "figures": ["missing.png"]}])


def test_cohort_report_end_to_end(tmp_path, heterogeneity_dir):
    pytest.importorskip("lifelines")
    from RadTyperLib.report import cohort_report

    rng = np.random.default_rng(7)
    n = 90
    subtype = rng.integers(1, 4, n)
    ids = [f"P{i:03d}" for i in range(n)]
    labels = pd.DataFrame({"patient": ids, "subtype": subtype})
    t = rng.exponential(12 / subtype)
    c = rng.uniform(0, 30, n)
    clinical = tmp_path / "clinical.csv"
    pd.DataFrame(
        {"patient": ids, "time": np.minimum(t, c), "event": (t <= c).astype(int), "age": rng.normal(60, 8, n)}
    ).to_csv(clinical, index=False)
    features = pd.DataFrame({f"region_f{j}": rng.normal(subtype * (j == 0), 1) for j in range(5)})
    features.insert(0, "patient", ids)
    M, cons_labels = _consensus()
    out = tmp_path / "report"
    index = cohort_report(
        out,
        labels=labels,
        clinical=clinical,
        covariates=["age"],
        features=features,
        consensus={"matrix": M, "labels": cons_labels, "cdf": {2: M, 3: M}, "delta_area": [0.5, 0.1]},
        heterogeneity=heterogeneity_dir,
        n_boot=200,
    )
    text = index.read_text(encoding="utf-8")
    srcs = re.findall(r'<img src="([^"]+)"', text)
    expected = ["consensus.png", "consensus_cdf.png", "subtypes.png", "km.png", "heterogeneity.png"]
    assert srcs == [*expected, "figures/recovery_curves.png"]
    for src in srcs:
        _png_ok(out / src)
    assert "Henry et al.&#x27;s tests" in text or "Henry et al.'s tests" in text  # per-patient tests table
    cox = pd.read_csv(out / "cox.csv")
    assert list(cox["term"]) == ["age", "subtype=2", "subtype=3"] and (cox["hr"].iloc[1:] > 1).all()
    import json

    summary = json.loads((out / "survival.json").read_text())
    c, (lo, hi) = summary["c_index_subtype"]["c"], summary["c_index_subtype"]["ci95"]
    assert 0 <= lo <= c <= hi <= 1 and summary["logrank"]["p"] < 0.05
    with pytest.raises(InputError, match="nothing to report"):
        cohort_report(tmp_path / "empty")


def test_consensus_result_like_object_and_shared_grid(tmp_path):
    """A ConsensusResult-like object (shared CDF grid ``cdf_x``) goes straight into the report."""
    from types import SimpleNamespace

    from RadTyperLib.report import cohort_report

    M3, lab3 = _consensus(4)
    M2, lab2 = _consensus(5, (15, 13))
    grid = np.linspace(0.01, 1.0, 100)
    cdf = {
        k: np.searchsorted(np.sort(m[np.triu_indices(28, 1)]), grid, side="right") / 378
        for k, m in ((2, M2), (3, M3))
    }
    result = SimpleNamespace(
        ks=[2, 3],
        consensus={2: M2, 3: M3},
        labels={2: lab2, 3: lab3},
        cdf=cdf,
        cdf_x=grid,
        delta_area={2: 0.7, 3: 0.2},
        chosen_k=3,
    )
    index = cohort_report(tmp_path / "r", consensus=result)
    for name in ("consensus.png", "consensus_cdf.png"):
        _png_ok(tmp_path / "r" / name)
        assert f'src="{name}"' in index.read_text()
    with pytest.raises(InputError, match="CDF values for 100 grid points"):
        plot_consensus_cdf({2: grid[:50]}, [0.7], tmp_path / "bad.png", x=grid)


def test_subtype_profile_section_and_extra_sections(tmp_path):
    """With the RadTyper feature columns, the report adds the Fig. 3c profile (PNG + CSV) of the subtypes."""
    from RadTyperLib.report import cohort_report, plot_subtype_profile
    from RadTyperLib.subtypes.profile import PROFILE_GROUPS, subtype_profile

    rng = np.random.default_rng(11)
    n = 60
    subtype = np.repeat(["S1", "S2", "S3"], n // 3)
    big, sharp, rough = (subtype == "S1"), (subtype == "S2"), (subtype == "S3")
    cols = {f: rng.normal(0, 1, n) for members in PROFILE_GROUPS.values() for f in members}
    cols["burden_volume_mm3"] = np.exp(7 + 1.5 * big + 0.3 * rng.normal(size=n))
    cols["burden_mean_radius_mm"] = 6 + 5 * big + rng.normal(0, 0.5, n)
    for f, sign in PROFILE_GROUPS["margin_sharpness"].items():
        cols[f] = cols[f] + 3 * sign * sharp
    for f in PROFILE_GROUPS["irregularity"]:
        cols[f] = cols[f] + 3 * rough
    table = pd.DataFrame({"patient": [f"P{i:02d}" for i in range(n)], "lesion": "L1", **cols})
    labels = pd.DataFrame({"patient": table["patient"], "subtype": subtype})

    prof = subtype_profile(table, labels)
    g = prof.groups
    assert list(g.index) == ["S1", "S2", "S3"] and g["n"].tolist() == [20, 20, 20]
    assert g["burden"].idxmax() == "S1" and g["margin_sharpness"].idxmax() == "S2"
    assert g["irregularity"].idxmax() == "S3" and abs(g["symmetry"]).max() < 0.6  # symmetry: noise only
    # the group value is the mean of the signed per-feature mean z-scores
    z = (table["region_tim_pm5_correl"] - table["region_tim_pm5_correl"].mean()) / table[
        "region_tim_pm5_correl"
    ].std()
    assert prof.features.loc["S2", "region_tim_pm5_correl"] == pytest.approx(z[sharp].mean())
    manual = np.mean([s * prof.features.loc["S2", f] for f, s in PROFILE_GROUPS["margin_sharpness"].items()])
    assert g.loc["S2", "margin_sharpness"] == pytest.approx(manual)
    _png_ok(plot_subtype_profile(prof, tmp_path / "p.png"), min_w=250, min_h=150)

    out = tmp_path / "r"
    index = cohort_report(
        out,
        labels=labels,
        features=table,
        extra_sections=[ReportSection("Extra", "one more", tables=[("t", pd.DataFrame({"a": [1]}))])],
    )
    text = index.read_text(encoding="utf-8")
    assert re.findall(r'<img src="([^"]+)"', text) == ["subtypes.png", "profile.png"]
    assert "as Wu et al. Fig. 3c" in text and text.rstrip().endswith("</html>")
    assert text.index("<h2>Extra</h2>") > text.index("profile.png")
    saved = pd.read_csv(out / "profile.csv", index_col=0)
    assert saved.loc["S1", "burden"] == pytest.approx(g.loc["S1", "burden"], abs=1e-3)
    with pytest.raises(InputError, match="none of the profile features"):
        subtype_profile(table[["patient", "lesion"]].assign(x=1.0), labels)
