"""``radtyper features`` writes its table without pandas; the file must equal pandas' ``to_csv`` (issue 15)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from RadTyperLib.features import FeatureSettings, order_columns, patient_feature_rows, patient_features
from RadTyperLib.io import write_rows_csv
from RadTyperLib.phantoms import make_patient


def _pandas_text(tmp_path, columns, rows) -> str:
    path = tmp_path / "pandas.csv"
    pd.DataFrame(rows)[columns].to_csv(path, index=False, float_format="%.8g")
    return path.read_text()


def test_writer_equals_pandas_on_mixed_rows(tmp_path):
    rows = [
        {"lesion": "a,b", "site": "lung", "x": 1.0 / 3.0, "n": 3, "k": 2, "e": "", "big": 123456789012.5},
        {"lesion": 'q"uote', "site": "liver", "x": math.nan, "n": 4, "k": np.nan, "e": "bad mask",
         "big": np.float32(0.1), "inf": math.inf},
        {"lesion": "c", "site": "node", "x": np.float64(-2.5e-12), "n": np.int64(7), "k": 5, "e": ""},
    ]  # fmt: skip
    columns = order_columns([k for r in rows for k in r])
    write_rows_csv(tmp_path / "ours.csv", columns, rows)
    assert (tmp_path / "ours.csv").read_text() == _pandas_text(tmp_path, columns, rows)


def test_feature_rows_equal_patient_features(tmp_path):
    patient = make_patient(0)
    settings = FeatureSettings(radiomics=False)
    names = [les.name for les in patient.lesions[:2]]
    columns, results = patient_feature_rows(patient, settings, lesions=names)
    table, _ = patient_features(patient, settings, lesions=names)
    assert list(table.columns) == columns
    write_rows_csv(tmp_path / "ours.csv", columns, [r.row for r in results])
    table.to_csv(tmp_path / "pandas.csv", index=False, float_format="%.8g")
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "pandas.csv").read_text()


def test_single_lesion_features_run_imports_no_pandas(tmp_path):
    """Start-up (issue 15): ``radtyper features`` pays no import it does not use (pandas, sklearn, torch …)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import RadTyperLib
    from RadTyperLib.io import write_patient

    files = write_patient(make_patient(0), tmp_path / "p")
    code = (
        "import sys; from RadTyperLib.cli import main; "
        f"rc = main(['features', '--image', {str(files['image'])!r}, '--lesions', {str(files['lesions'])!r}, "
        f"'--out', {str(tmp_path / 'f.csv')!r}, '--no-radiomics', '--quiet', '--lesion', 'lung_1']); "
        "heavy = [m for m in ('pandas', 'sklearn', 'torch', 'dask', 'matplotlib', 'vtk') "
        "if m in sys.modules]; print(rc, heavy)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(RadTyperLib.__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "0 []", res.stdout
