"""Write the 293 shape + burden features of the phantom patient's lesions as JSON (for comparing environments).

    PYTHONPATH=RadTyper python Resources/Scripts/shape_features_json.py --out features.json

Used by Testing/test_slicer_contract.py to compare the development environment with Slicer 5.10's bundled
numpy / SciPy / SimpleITK (.venv-slicer-5.10); prints the environment's versions.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import scipy
    import SimpleITK as sitk

    from RadTyperLib.phantoms import make_patient
    from RadTyperLib.shape import FEATURE_NAMES, compute_shape

    patient = make_patient(args.seed)
    labels = sitk.GetArrayFromImage(patient.labels)
    lesions, rows = [], []
    for lesion in patient.lesions:
        result = compute_shape(labels == lesion.label, patient.labels, lesion=lesion.name)
        lesions.append(lesion.name)
        rows.append([float(v) for v in result.feature_vector()])
    columns = list(FEATURE_NAMES)
    versions = {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "SimpleITK": sitk.Version_VersionString(),
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump({"versions": versions, "lesions": lesions, "columns": columns, "values": rows}, fh)
    print(json.dumps(versions), f"{len(lesions)} lesions x {len(columns)} features", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
