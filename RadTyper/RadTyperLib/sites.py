"""Anatomical sites of lesions: one controlled vocabulary shared by the CLI, the GUI and saved tables.

Henry et al. group lesions by metastatic site (and simulate RECIST-like sampling that excludes bone), so the
site must be one of a small, known set. Synonyms a user may type are mapped to the canonical name.
"""

from __future__ import annotations

from .errors import InputError

#: Canonical site names (lower-case, snake_case). ``unspecified`` is used when no site is given.
SITES: tuple[str, ...] = (
    "lung",
    "liver",
    "lymph_node",
    "bone",
    "brain",
    "adrenal",
    "kidney",
    "spleen",
    "pancreas",
    "peritoneum",
    "pleura",
    "soft_tissue",
    "breast",
    "skin",
    "other",
    "unspecified",
)

_SYNONYMS: dict[str, str] = {
    "lymph node": "lymph_node",
    "lymph-node": "lymph_node",
    "lymphnode": "lymph_node",
    "node": "lymph_node",
    "ln": "lymph_node",
    "nodal": "lymph_node",
    "pulmonary": "lung",
    "hepatic": "liver",
    "osseous": "bone",
    "skeletal": "bone",
    "cerebral": "brain",
    "soft tissue": "soft_tissue",
    "soft-tissue": "soft_tissue",
    "muscle": "soft_tissue",
    "pleural": "pleura",
    "peritoneal": "peritoneum",
    "adrenal gland": "adrenal",
    "renal": "kidney",
    "splenic": "spleen",
    "": "unspecified",
    "unknown": "unspecified",
    "na": "unspecified",
}


def normalize_site(value: str | None, *, context: str = "") -> str:
    """Return the canonical site name for ``value`` (case and synonyms tolerated).

    Raises:
        InputError: the value is not a known site; the message lists the accepted names.
    """
    key = "" if value is None else str(value).strip().lower()
    key = _SYNONYMS.get(key, key).replace(" ", "_").replace("-", "_")
    if key in SITES:
        return key
    where = f"{context}: " if context else ""
    raise InputError(f"{where}unknown site '{value}'; use one of: {', '.join(SITES)}")
