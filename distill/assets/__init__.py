"""The files distill ships beside its code: the prompt templates (`prompts/`) and the
review kit (`review/`: guidelines, the local Argilla launcher).

Both live at the top of the repository, where users read and copy them. In a checkout
`distill/assets/prompts` and `distill/assets/review` are symlinks to them; the wheel
carries copies (pyproject.toml's package-data). Code finds them here, through
importlib.resources, so an installed distill works from any folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from distill.errors import UserError


def path(*parts: str) -> Path:
    """The file-system path of a shipped file or folder, e.g. path("review", "guidelines.md")."""
    found = files(__name__).joinpath(*parts)
    if not isinstance(found, Path):  # a zipped install: the Argilla launcher must be a file
        raise UserError(
            f"distill's {'/'.join(parts)} is inside an archive ({found}); "
            "install distill unpacked: pip install distill"
        )
    return found
