"""Fetch, before `make test` cuts the network, the tools the suite installs on first
use: argilla-server's virtual environment (pip) and llama.cpp's GGUF converters (the
llama-cpp-python sources, pip download, pinned by sha256). Both go to $DISTILL_TOOLS
(default the distill cache); a second run finds them and returns at once."""

from __future__ import annotations

import time


def main() -> None:
    from distill.export import converter_dir
    from distill.review.server import ensure_venv
    from distill.ui import console

    t0 = time.perf_counter()
    venv = ensure_venv()
    converters = converter_dir()
    console.print(
        f"test tools ready ({time.perf_counter() - t0:.0f} s): {venv.parent.parent}, {converters}"
    )


if __name__ == "__main__":
    main()
