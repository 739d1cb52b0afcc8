"""The demo patient in Slicer's Sample Data module ("RadTyper" category), generated locally on first use.

Nothing is downloaded: the synthetic CT with 8 lesions (``RadTyperMRML.demo_data``) is written once into
Slicer's cache folder and registered with ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` with
``file://`` URIs (SampleData fetches URIs with ``urllib``, which reads local files and copies them into its
cache). The Sample Data button runs a custom downloader that writes the files first; scripts and self-tests
call :func:`loadDemoPatient`, which does the same.
"""

import os
import urllib.parse
import urllib.request
from pathlib import Path

import slicer
from slicer.i18n import tr as _

CATEGORY = "RadTyper"
SAMPLE_NAME = "RadTyperDemoPatient"


def demoFolder() -> Path:
    """Where the demo files are written: ``<Slicer cache>/RadTyper/demo-v<version>``."""
    from RadTyperMRML.demo_data import DEMO_VERSION

    return Path(slicer.app.cachePath) / "RadTyper" / f"demo-v{DEMO_VERSION}"


def ensureDemoFiles() -> dict:
    """Write the demo files if they are not there yet (a few seconds); return their paths."""
    from RadTyperMRML.demo_data import write_demo_files

    return write_demo_files(demoFolder())


def _uri(path: Path) -> str:
    return urllib.parse.urljoin("file:", urllib.request.pathname2url(os.fspath(path)))


def _source():
    import SampleData

    from RadTyperMRML.demo_data import DEMO_FILES, DEMO_VERSION, demo_files

    files = demo_files(demoFolder())
    keys = list(DEMO_FILES)
    iconPath = Path(__file__).resolve().parents[1] / "Resources" / "Icons" / "RadTyper.png"
    return SampleData.SampleDataSource(
        sampleName=SAMPLE_NAME,
        uris=[_uri(files[k]) for k in keys],
        # names in SampleData's cache folder: versioned, so that new demo data replace an old copy
        fileNames=[f"v{DEMO_VERSION}_{DEMO_FILES[k][0]}" for k in keys],
        nodeNames=[DEMO_FILES[k][1] for k in keys],
        loadFileTypes=["VolumeFile", "SegmentationFile", "SegmentationFile"],
        thumbnailFileName=str(iconPath),
        customDownloader=_download,
    )


def _download(source) -> list:
    """Custom downloader of the Sample Data button: write the files, then load them as usual."""
    import SampleData

    from RadTyperSlicerLib.GuiHelpers import reportErrors

    nodes = []
    with reportErrors(_("Failed to create the RadTyper demo patient."), waitCursor=True):
        ensureDemoFiles()
        nodes = SampleData.SampleDataLogic().downloadFromSource(source)
    return nodes


def registerSampleData() -> None:
    """Add the demo patient to the Sample Data module (called when Slicer has started)."""
    try:
        import SampleData
    except ImportError:  # Sample Data module disabled
        return
    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):
        logic.registerCustomSampleDataCategory(CATEGORY, _("RadTyper"))
    source = _source()
    logic.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName=source.sampleName,
        uris=source.uris,
        fileNames=source.fileNames,
        nodeNames=source.nodeNames,
        loadFileTypes=source.loadFileTypes,
        thumbnailFileName=source.thumbnailFileName,
        customDownloader=_download,
    )


def loadDemoPatient() -> tuple:
    """Load the demo patient into the scene: (volume, lesion segmentation, parenchyma segmentation).

    Uses Sample Data when it is available, else the MRML bridge directly.
    """
    try:
        import SampleData
    except ImportError:
        SampleData = None
    if SampleData is not None:
        ensureDemoFiles()
        nodes = SampleData.SampleDataLogic().downloadFromSource(_source())
        if len(nodes) == 3 and all(hasattr(n, "IsA") for n in nodes):
            return tuple(nodes)
    from RadTyperMRML.demo_data import load_demo_into_scene

    return load_demo_into_scene(slicer.mrmlScene)
