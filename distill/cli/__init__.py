"""The `distill` command line. Errors from distill print one line and exit non-zero.

The app and its shared options are in distill.cli.app; the commands register on it in
the order `distill --help` lists them (commands, publish, review, serve).
"""

from __future__ import annotations

import os
import sys
import warnings

from distill.cli import commands, publish, review, serve  # noqa: F401 - they register the commands
from distill.cli.app import app
from distill.errors import DistillError

__all__ = ["app", "main"]


def main() -> int:
    # Nothing may reach a hub at run time unless the user turns it back on.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Deprecation notices from inside transformers/TRL/PEFT are for their callers'
    # developers, not for someone running a recipe.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\.")
    from rich.markup import escape

    from distill.redact import redact
    from distill.ui import console

    try:
        # Standalone mode: usage errors print click's one-line message and exit 2.
        app()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        console.print(
            "interrupted; finished stages are kept, rerun to continue "
            "(training continues from its last checkpoint with `distill train RECIPE --resume`)"
        )
        return 130
    except DistillError as e:
        for line in redact(str(e)).splitlines() or [type(e).__name__]:
            console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
