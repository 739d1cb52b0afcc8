"""Python packages RadTyper needs in Slicer's Python, installed on first use with the user's confirmation.

Call :func:`installPythonRequirements` where the packages are first needed (a Compute button), never at
import time or in a constructor. On Slicer 5.12 it is ``slicer.packaging.pip_ensure`` (which skips installs
under ``--testing``); on Slicer 5.10 (no ``slicer.packaging``) it asks with a dialog and runs
``slicer.util.pip_install --only-binary :all:`` (users have no C compiler).

torch never comes from pip: :func:`ensureTorch` asks the PyTorch extension (``PyTorchUtils``) to install the
build that matches the machine (CUDA or CPU), as SlicerTotalSegmentator and SlicerMONAIAuto3DSeg do.
"""

import importlib.metadata
import logging
import re

import slicer
from slicer.i18n import tr as _


class InstallDeclined(RuntimeError):
    """The user declined the installation of packages."""


def requirementLines(requirementsPath: str) -> list[str]:
    """The requirement lines of a requirements file (comments, blank lines and options dropped)."""
    with open(requirementsPath, encoding="utf-8") as f:
        lines = (raw.split("#", 1)[0].strip() for raw in f)
        return [line for line in lines if line and not line.startswith("-")]


def missingPythonRequirements(requirementsPath: str) -> list[str]:
    """Requirement lines of ``requirementsPath`` whose distribution is not installed (no version check)."""
    missing = []
    for line in requirementLines(requirementsPath):
        name = re.split(r"[\s<>=!~;\[@]", line, maxsplit=1)[0]
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
    return missing


def installPythonRequirements(requirementsPath: str, requester: str = "RadTyper") -> None:
    """Make sure the packages listed in ``requirementsPath`` are installed, asking the user first.

    Raises:
        InstallDeclined: the user declined the installation.
    """
    try:
        from slicer import packaging
    except ImportError:  # Slicer 5.10
        _installWithPip(requirementsPath, requester)
        return
    packaging.pip_ensure(packaging.load_requirements(requirementsPath), requester=requester)


#: Requirement files already satisfied in this Slicer session (checked once each).
_satisfied: set[str] = set()


def ensurePythonRequirements(requirementsPath: str, requester: str = "RadTyper") -> bool:
    """:func:`installPythonRequirements` on first use of ``requirementsPath`` in this session.

    For widget actions: a failure or a refusal is shown to the user (message box) and gives False; once a file
    is satisfied it is not checked again. Listing lesions needs only Slicer's bundled packages; computing,
    segmenting and the parenchyma need more.
    """
    from .GuiHelpers import reportErrors

    key = str(requirementsPath)
    if key not in _satisfied and not requirementLines(key):  # nothing beyond Slicer's own packages
        _satisfied.add(key)
    if key not in _satisfied:
        with reportErrors(_("RadTyper needs Python packages that could not be installed.")):
            installPythonRequirements(key, requester=requester)
            _satisfied.add(key)
    return key in _satisfied


def _installWithPip(requirementsPath: str, requester: str) -> None:
    """Slicer 5.10 (no ``slicer.packaging``): confirm, then ``slicer.util.pip_install`` from wheels only."""
    missing = missingPythonRequirements(requirementsPath)
    if not missing:
        return
    if slicer.app.testingEnabled():
        logging.info(f"Testing mode is enabled: not installing {', '.join(missing)}")
        return
    message = _(
        "{requester} needs {count} Python package(s) that are not installed yet.\n\n"
        "This will modify Slicer's Python environment. Continue?"
    ).format(requester=requester, count=len(missing))
    if not slicer.util.confirmOkCancelDisplay(
        message,
        _("{requester} - Install Python Packages").format(requester=requester),
        detailedText="\n".join(missing),
    ):
        raise InstallDeclined("User declined package installation")
    slicer.util.pip_install(["--only-binary", ":all:", *missing])  # users have no C compiler


def ensureTorch(minimumVersion: str = "2.1") -> object:
    """torch from the PyTorch extension (``PyTorchUtilsLogic().installTorch``, which asks the user first).

    Raises:
        ComponentMissingError: the PyTorch extension is missing or torch was not installed.
    """
    from RadTyperMRML.torch_provider import ensure_torch

    return ensure_torch(minimumVersion)


def ensureRadiomics() -> None:
    """Check that pyradiomics can be imported (only needed when "Radiomics" is ticked).

    pyradiomics and its dependency docopt have no wheel for Slicer's Python: the Extensions Manager package
    ships them, built on the extension build machines (SuperBuild). A RadTyper run from source without them
    gets a clear error instead of a compiler failure.

    Raises:
        ComponentMissingError: pyradiomics is not available in this Slicer.
    """
    import importlib.util

    from RadTyperMRML.lesions_logic import ComponentMissingError

    if importlib.util.find_spec("radiomics") is None:
        raise ComponentMissingError(
            "pyradiomics is not installed in this Slicer. Install RadTyper from the Extensions Manager (its "
            "package includes pyradiomics), or untick Radiomics to compute the other features."
        )


def installForTesting(requirementsPath: str) -> None:
    """Self-tests: install missing requirements from wheels without asking (so the tests run, never skip)."""
    missing = missingPythonRequirements(requirementsPath)
    if missing:
        logging.info(f"RadTyper self-test: installing {', '.join(missing)}")
        slicer.util.pip_install(["--only-binary", ":all:", *missing])
