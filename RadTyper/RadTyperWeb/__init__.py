"""RadTyperWeb: ``radtyper view``, a browser application to review and analyse every lesion of a patient.

Built on trame-slicer (Kitware): Slicer's own MRML scene, slice and 3-D views and Segment Editor effects,
served to a browser. The actions of the page live in :mod:`RadTyperWeb.session` (no trame, no Qt, tested with
the ``slicer-core`` wheel); :mod:`RadTyperWeb.app` is the page. trame and trame-slicer are imported only by
:mod:`RadTyperWeb.app` (the ``web`` extra: ``pip install 'radtyper[web]'``).
"""

WEB_EXTRA_HINT = "pip install 'radtyper[web]' (trame-slicer 2.0 with slicer-core 5.11)"
