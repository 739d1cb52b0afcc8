"""Slicer-side parts of the RadTyper module: widget controller, background-process poller, dependencies,
sample data and view helpers.

These modules import ``slicer``, ``qt`` and ``slicer.util`` and run only inside the Slicer application. They
hold no computation: the work is done by the Qt-free logic in ``RadTyperMRML`` (tested with plain pytest) and
the core library ``RadTyperLib``. The module file ``RadTyper.py`` imports them inside its functions.
"""
