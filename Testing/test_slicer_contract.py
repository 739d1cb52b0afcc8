"""RadTyper against the real Slicer 5.10 and 5.12: Slicer's own code from ../shared/slicer-reference.

(a) Slicer's own ``parameterNodeWrapper`` binds every parameter of both parameter-node classes to the .ui
    widget that names it (``slicer_parameter_node_check.py``, one interpreter per release);
(b) Slicer's own ``SlicerMacroBuildScriptedModule`` builds and installs both modules with Ninja and with Unix
    Makefiles, and every tracked module file is in the installed tree;
(c) a Python 3.12 environment per release with Slicer's bundled numpy / SciPy / SimpleITK
    (``Resources/Scripts/slicer_python_envs.sh``, run by the test command) installed the modules' requirements
    from wheels only, and the core test subset passes in it; pyradiomics built with the SuperBuild's own pip
    command (the extension package's copy) passes RadTyper's pyradiomics tests there.

Everything skips cleanly when the kit (../shared/slicer-reference) is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KIT = REPO.parent / "shared" / "slicer-reference"
RELEASES = ("5.10", "5.12")
MODULES = ("RadTyper", "RadTyperLesions")
#: Core tests run under each release's pins: features of phantoms, heterogeneity, subtype prediction,
#: seeded segmentation, and the SciPy-independent spherical harmonics.
CORE_SUBSET = (
    "Testing/test_shape_harmonics.py",
    "Testing/test_shape_features.py",
    "Testing/test_phantoms.py",
    "Testing/test_heterogeneity_indexes.py",
    "Testing/test_subtypes_default_model.py",
    "Testing/test_segmentation_seeded.py",
)
PINS = {
    "5.10": {"numpy": "2.0.2", "scipy": "1.13.1", "SimpleITK": "2.5.2"},
    "5.12": {"numpy": "2.4.6", "scipy": "1.17.1", "SimpleITK": "2.5.5"},
}


def kit(release: str) -> Path:
    path = KIT / release
    if not path.is_dir():
        pytest.skip(f"Slicer reference kit not available ({path})")
    return path


# --- (a) parameter nodes ----------------------------------------------------------------------------------
@pytest.mark.mrml
@pytest.mark.parametrize("release", RELEASES)
def test_parameter_nodes_bind_every_parameter_with_slicers_own_wrapper(release):
    pytest.importorskip("slicer")
    folder = kit(release)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "RadTyper"), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, str(REPO / "Testing" / "slicer_parameter_node_check.py"), str(folder), str(REPO)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["release"] == release
    for module in MODULES:
        out = report[module]
        assert out["errors"] == [], f"Slicer {release}, {module}: {out['errors']}"
        assert out["unbound"] == [], (
            f"Slicer {release}, {module}: parameters without a widget {out['unbound']}"
        )
        assert len(out["bindings"]) >= 5
        # unset paths show as empty fields, not "."
        assert out["empty_paths"] and all(v == "" for v in out["empty_paths"].values()), out["empty_paths"]
    # the widget classes that Slicer 5.8 could not bind are bound by 5.10/5.12's connectors
    lesions = report["RadTyperLesions"]["bindings"]
    assert lesions["seedPoints"][0] == "qSlicerSimpleMarkupsWidget"
    assert report["RadTyper"]["bindings"]["spharmDegree"][1].endswith("Connector")
    # the input volume's phase name is a QLineEdit; the extra phase volumes are not a parameter (no connector
    # binds a checkable node combobox to a node list in 5.10 or 5.12: a plain widget read at Compute)
    assert report["RadTyper"]["bindings"]["imagePhase"] == ["QLineEdit", "QLineEditToStrConnector"]


# --- (b) build and install with Slicer's CMake macro ------------------------------------------------------
def _python312() -> str | None:
    env_python = REPO / ".venv-slicer-5.12" / "bin" / "python"
    for candidate in (os.environ.get("PYTHON312"), str(env_python), shutil.which("python3.12")):
        if candidate and Path(candidate).exists():
            ok = subprocess.run(
                [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 12))"],
                capture_output=True,
            )
            if ok.returncode == 0:
                return candidate
    return None


#: Tracked folders of the module directories that the Slicer extension does not ship: the browser application
#: (`radtyper view`, trame-slicer) runs outside Slicer.
NOT_IN_EXTENSION = ("RadTyperWeb/",)


def _tracked_module_files() -> set[str]:
    files = subprocess.run(
        ["git", "ls-files", *MODULES], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    out = set()
    for f in files:
        _module, _, rest = f.partition("/")
        if rest == "CMakeLists.txt" or rest.startswith(("Testing/", *NOT_IN_EXTENSION)):
            continue
        if not (REPO / f).exists():  # deleted in the work tree, not yet committed
            continue
        out.add(rest)
    return out


@pytest.mark.parametrize("generator", ["Ninja", "Unix Makefiles"])
@pytest.mark.parametrize("release", RELEASES)
def test_slicers_cmake_macro_builds_and_installs_both_modules(release, generator, tmp_path):
    folder = kit(release)
    tool = "ninja" if generator == "Ninja" else "make"
    for exe in ("cmake", tool):
        if shutil.which(exe) is None:
            pytest.skip(
                f"{exe} not installed (bootstrap.sh installs cmake, ninja-build and make with apt-get)"
            )
    python = _python312() or sys.executable
    libpython = subprocess.run(
        [
            python,
            "-c",
            "import os, sysconfig; v = sysconfig.get_config_var; print(os.path.join(v('LIBDIR'), v('LDLIBRARY')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ctk = KIT / "ctk-cmake"
    scripted = f"lib/Slicer-{release}/qt-scripted-modules"
    src = tmp_path / "src"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        f"""cmake_minimum_required(VERSION 3.16)
project(RadTyperContract NONE)
set(CTK_CMAKE_DIR "{ctk}")
include("{ctk}/ctkFunctionExtractOptimizedLibrary.cmake")
include("{ctk}/ctkMacroCompilePythonScript.cmake")
include("{folder}/CMake/SlicerMacroBuildScriptedModule.cmake")
set(Slicer_USE_PYTHONQT ON)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {scripted})
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR {scripted})
set(BUILD_TESTING OFF)
set(PYTHONINTERP_FOUND TRUE)
set(PYTHON_EXECUTABLE "{python}")
set(PYTHONLIBS_FOUND TRUE)
set(PYTHON_LIBRARIES "{libpython}")
set(PYTHON_LIBRARY "{libpython}")
add_subdirectory("{REPO / "RadTyper"}" RadTyper)
add_subdirectory("{REPO / "RadTyperLesions"}" RadTyperLesions)
""",
        encoding="utf-8",
    )
    build, install = tmp_path / "build", tmp_path / "install"

    def step(*args):
        run = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{' '.join(map(str, args))}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        return run

    step("cmake", "-S", src, "-B", build, "-G", generator)
    step("cmake", "--build", build)
    step("cmake", "--install", build, "--prefix", install)
    root = install / scripted
    installed = {
        str(p.relative_to(root)).replace(os.sep, "/")
        for p in root.rglob("*")
        if p.is_file() and p.suffix != ".pyc" and "__pycache__" not in p.parts
    }
    missing = _tracked_module_files() - installed
    assert not missing, (
        f"Slicer {release} / {generator}: tracked module files not installed: {sorted(missing)}"
    )
    # the byte-compiled module files are there too (ctkMacroCompilePythonScript)
    assert any(p.suffix == ".pyc" for p in root.rglob("RadTyper*.pyc"))


# --- (c) Slicer's bundled numpy / SciPy / SimpleITK -------------------------------------------------------
def slicer_env(release: str) -> Path:
    kit(release)
    venv = REPO / f".venv-slicer-{release}"
    failed = venv / "install-failed.log"
    if failed.is_file():
        pytest.fail(
            f"the modules' requirements do not install from wheels under Slicer {release}'s pins:\n"
            + failed.read_text(encoding="utf-8", errors="replace")[-3000:]
        )
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{venv} not built (Resources/Scripts/slicer_python_envs.sh: no Python 3.12 here)")
    return python


@pytest.mark.slow
@pytest.mark.parametrize("release", RELEASES)
def test_core_subset_passes_under_slicers_bundled_packages(release):
    python = slicer_env(release)
    versions = subprocess.run(
        [
            python,
            "-c",
            "import sys, json, numpy, scipy, SimpleITK; print(json.dumps({'python': sys.version.split()[0], "
            "'numpy': numpy.__version__, 'scipy': scipy.__version__, 'SimpleITK': SimpleITK.Version_VersionString()}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(versions.stdout)
    assert got["python"].startswith("3.12.")
    assert {k: got[k] for k in PINS[release]} == PINS[release]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(REPO / "RadTyper")
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *CORE_SUBSET],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert run.returncode == 0, f"Slicer {release} pins:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
    assert " passed" in run.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_shape_features_under_slicer_510_pins_equal_the_development_environment(tmp_path):
    """The 293 shape + burden features of phantom lesions: same values under Slicer 5.10's pins as here."""
    python = slicer_env("5.10")
    script = REPO / "Resources" / "Scripts" / "shape_features_json.py"
    mine = tmp_path / "dev.json"
    theirs = tmp_path / "slicer-5.10.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "RadTyper")}
    for exe, out in ((sys.executable, mine), (str(python), theirs)):
        run = subprocess.run(
            [exe, script, "--out", out], capture_output=True, text=True, env=env, timeout=600
        )
        assert run.returncode == 0, run.stderr[-3000:]
    a = json.loads(mine.read_text())
    b = json.loads(theirs.read_text())
    assert a["lesions"] == b["lesions"] and len(a["columns"]) == 293
    import numpy as np

    x, y = np.asarray(a["values"], float), np.asarray(b["values"], float)
    assert x.shape == y.shape == (len(a["lesions"]), 293)
    rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-12)
    print(f"max relative difference of the 293 shape features (5.10 pins vs dev): {rel.max():.3g}")
    assert rel.max() < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("release", RELEASES)
def test_superbuild_pyradiomics_works_under_slicers_bundled_packages(release):
    """pyradiomics as the extension package ships it (SuperBuild's pip command) works with Slicer's numpy."""
    python = slicer_env(release)
    venv = python.parent.parent
    failed = venv / "extension-packages-failed.log"
    if failed.is_file():
        pytest.fail(
            f"the SuperBuild's packages do not build for Slicer {release}:\n"
            + failed.read_text(encoding="utf-8", errors="replace")[-3000:]
        )
    site = venv / "extension-packages" / "lib" / "python3.12" / "site-packages"
    if not site.is_dir():
        pytest.skip(f"{site} not built (Resources/Scripts/slicer_python_envs.sh)")
    names = {p.name.lower() for p in site.iterdir()}
    assert "radiomics" in names and "pywt" in names and "docopt.py" in names
    assert not any(n.startswith(("numpy", "scipy", "simpleitk")) for n in names), "Slicer's packages replaced"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "RadTyper"), str(site)])
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    check = subprocess.run(
        [
            python,
            "-c",
            "import radiomics, numpy, scipy, SimpleITK; print(numpy.__version__, scipy.__version__)",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    assert check.stdout.split() == [PINS[release]["numpy"], PINS[release]["scipy"]]
    run = subprocess.run(
        [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-x",
            "Testing/test_pyradiomics_features.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert run.returncode == 0, f"Slicer {release}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
