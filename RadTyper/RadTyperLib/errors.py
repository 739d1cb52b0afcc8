"""Errors raised on bad input. Every message names the file or lesion concerned and the problem."""

from __future__ import annotations


class RadTyperError(Exception):
    """Base class of the errors RadTyper reports to the user as one line (CLI exit code 2)."""


class InputError(RadTyperError):
    """A file, image, mask or table given by the user cannot be used as it is."""


class LesionError(RadTyperError):
    """One lesion cannot be processed; ``lesion`` names it."""

    def __init__(self, lesion: str, problem: str) -> None:
        self.lesion = lesion
        self.problem = problem
        super().__init__(f"lesion '{lesion}': {problem}")
