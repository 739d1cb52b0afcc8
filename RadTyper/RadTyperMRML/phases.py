"""Extra co-registered phase volumes (e.g. DCE-MRI post-contrast phases) chosen in the RadTyper panel.

The panel's checkable volume selector gives a list of scalar volume nodes; :func:`phase_nodes_from` turns it
into the ``phase_nodes={phase name: node}`` that :meth:`AnalysisLogic.patient` takes, each phase named after
its node (:func:`phase_name_from`, sanitised to :data:`RadTyperLib.patient.PHASE_NAME`). Names that would
collide are refused with a message naming both volumes: a phase is never renamed behind the user's back,
because the name is part of every ``iith_<phase>_*`` column. Qt-free (MRML classes only).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from RadTyperLib.errors import InputError
from RadTyperLib.patient import DEFAULT_PHASE, check_phase_name

#: Longest phase name :data:`RadTyperLib.patient.PHASE_NAME` accepts.
MAX_PHASE_NAME = 32
#: Prefix of a node name that does not start with a letter ("2 post" → "p2-post").
PHASE_PREFIX = "p"


def phase_name_from(node_name: str) -> str:
    """The phase name for a volume called ``node_name``: a letter, then letters, digits or ``-`` (≤ 32).

    Accents are dropped (``ä`` → ``a``), every run of other characters (spaces, ``_``, ``.``, …) becomes one
    ``-``, leading and trailing ``-`` are removed, a name that does not start with a letter gets the prefix
    ``p`` and one with no letter or digit at all becomes ``phase``.
    """
    ascii_name = unicodedata.normalize("NFKD", str(node_name)).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9]+", "-", ascii_name).strip("-")
    if not name:
        return "phase"
    if not name[0].isalpha():
        name = PHASE_PREFIX + name
    return name[:MAX_PHASE_NAME].rstrip("-")


def input_phase_name(text: str | None) -> str:
    """The input volume's phase name from the panel's field: blank = ``image``; invalid = InputError."""
    name = (text or "").strip() or DEFAULT_PHASE
    try:
        return check_phase_name(name)
    except InputError as exc:
        raise InputError(f"Input volume's {exc}") from None


def _key(node: Any) -> Any:
    """The node's scene ID (the same node may come back as another Python wrapper), else the object."""
    node_id = node.GetID() if hasattr(node, "GetID") else None
    return node_id or id(node)


def phase_nodes_from(
    volume_nodes: Iterable[Any] | None,
    input_volume: Any,
    image_phase: str | None = DEFAULT_PHASE,
    *,
    radiomics: bool = True,
) -> dict[str, Any]:
    """``{phase name: volume node}`` of the checked extra phase volumes, in the order given.

    The input volume itself (checked too, as happens when every phase of a series is checked) and repeated
    or ``None`` entries are skipped: the input volume is already the phase ``image_phase``. Raises
    InputError when ``image_phase`` is not a valid phase name, when a node is not a scalar volume, or when
    two volumes (or a volume and the input volume) get the same phase name, and when there are extra phases
    but ``radiomics`` is off: the multi-phase IITH features are pyradiomics features, so the phases would
    be silently ignored.
    """
    image_phase = input_phase_name(image_phase)
    out: dict[str, Any] = {}
    seen = {_key(input_volume)} if input_volume is not None else set()
    for node in volume_nodes or ():
        if node is None or _key(node) in seen:
            continue
        seen.add(_key(node))
        label = node.GetName()
        if not node.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"Phase volume '{label}' is not a scalar volume")
        name = phase_name_from(label)
        if name == image_phase:
            raise InputError(
                f"Phase volume '{label}' gets the phase name '{name}', which is the input volume's: rename "
                "the volume or change the input volume's phase name"
            )
        if name in out:
            raise InputError(
                f"Phase volumes '{out[name].GetName()}' and '{label}' both get the phase name '{name}': "
                "rename one of them"
            )
        out[name] = node
    if out and not radiomics:
        raise InputError(
            "Extra phase volumes need the radiomics features (the multi-phase IITH features are computed "
            "with pyradiomics): tick Radiomics features, or uncheck the extra phases"
        )
    return out


def describe_phases(phase_nodes: dict[str, Any], input_volume: Any, image_phase: str) -> str:
    """One line for the panel: ``phases: pre = 'DCE pre' (input), post1 = 'DCE post 1'``."""
    parts = [f"{image_phase} = '{input_volume.GetName()}' (input)"] if input_volume is not None else []
    parts += [f"{name} = '{node.GetName()}'" for name, node in phase_nodes.items()]
    return "phases: " + ", ".join(parts)
