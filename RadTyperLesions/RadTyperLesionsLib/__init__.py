"""Slicer-side parts of the RadTyper Lesions module: the widget controller (lesion table, one-click
segmentation, embedded Segment Editor, parenchyma).

Runs only inside the Slicer application; the work is done by ``RadTyperMRML.lesions_logic`` (Qt-free, tested
with plain pytest). The module file ``RadTyperLesions.py`` imports it inside its functions.
"""
