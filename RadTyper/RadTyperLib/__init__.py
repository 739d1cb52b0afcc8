"""RadTyper core library: per-lesion features, inter-lesion heterogeneity and imaging subtypes.

This package imports no ``slicer``, ``qt`` or ``ctk``; heavy optional packages (pyradiomics, scikit-learn,
torch, dask) are imported inside the functions that need them. Units: millimetres (mm) for geometry,
Hounsfield units (HU) for CT intensities.
"""

__version__ = "0.1.0"
