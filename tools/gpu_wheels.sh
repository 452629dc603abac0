#!/usr/bin/env bash
# Download the wheels tools/gpu_wheels.txt names into .whl/ (Python 3.12, manylinux
# x86_64, no dependencies: the list is complete for the nvidia-h200 image), trim the two
# large ones so everything travels in one device call, and print each wheel's size and
# the total against the 64 MiB a call may carry (working tree included).
#
# Trimmed (same file name, RECORD rewritten to match):
#   bitsandbytes: keeps libbitsandbytes_cuda130.so (the image's torch is cu130) and the
#     CPU library, drops the CUDA 11.8-12.8/13.2, ROCm and XPU libraries: 41.1 -> 3.4 MiB.
#   unsloth: drops studio/ (Unsloth Studio's web UI and server, never imported by
#     `import unsloth`): 28.6 -> 1.6 MiB.
#
# Run from the repository root, once, before a device call:  bash tools/gpu_wheels.sh
# .whl/ must be ignored: echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
if ! git check-ignore -q .whl/x.whl; then
    echo "error: .whl/ is not ignored; run: echo /.whl/ >> $(git rev-parse --git-path info/exclude)" >&2
    exit 1
fi
mkdir -p .whl
mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' tools/gpu_wheels.txt | grep -v '^$')
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "${wanted[@]}" 2>&1 | grep -v 'is ignored' || true

python3 - "${wanted[@]}" <<'EOF'
import re, sys, zipfile, os, pathlib

DROP = {
    # the image's torch is 2.11.0+cu130: bitsandbytes loads libbitsandbytes_cuda130.so
    "bitsandbytes": lambda n: re.fullmatch(r"bitsandbytes/libbitsandbytes_(?!cuda130\.so|cpu\.so).*\.so", n),
    "unsloth": lambda n: n.startswith("studio/"),
}
whl = pathlib.Path(".whl")

def norm(name):
    return re.sub(r"[-_.]+", "_", name).lower()

wanted = {norm(w.split("==")[0]): w.split("==")[1] for w in sys.argv[1:]}
found = {}
for f in sorted(whl.glob("*.whl")):
    name, version = f.name.split("-")[:2]
    if norm(name) not in wanted or wanted[norm(name)] != version:
        sys.exit(f"error: {f} is not in tools/gpu_wheels.txt (remove it: one version of each)")
    found[norm(name)] = f
missing = sorted(set(wanted) - set(found))
if missing:
    sys.exit(f"error: not downloaded: {missing}")

for key, drop in DROP.items():
    f = found[key]
    with zipfile.ZipFile(f) as z:
        names = z.namelist()
        if not any(drop(n) for n in names):
            continue  # trimmed already
        tmp = f.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for info in z.infolist():
                if drop(info.filename):
                    continue
                data = z.read(info)
                if info.filename.endswith(".dist-info/RECORD"):
                    rows = data.decode().splitlines(keepends=True)
                    data = "".join(r for r in rows if not drop(r.split(",")[0])).encode()
                out.writestr(info, data)
    before = f.stat().st_size
    os.replace(tmp, f)
    print(f"trimmed {f.name}: {before / 2**20:.1f} -> {f.stat().st_size / 2**20:.1f} MiB")

total = 0
for key in wanted:
    size = found[key].stat().st_size
    total += size
    print(f"{size:>10}  {size / 2**20:6.2f} MiB  {found[key].name}")
print(f"{total:>10}  {total / 2**20:6.2f} MiB  total wheels")
EOF
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
wheels=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "$tree  $(awk "BEGIN {printf \"%.2f\", $tree / 2^20}") MiB  working tree (tracked + untracked, not ignored)"
echo "$((tree + wheels))  $(awk "BEGIN {printf \"%.2f\", ($tree + $wheels) / 2^20}") MiB  one call with carry [.whl] (limit 64 MiB)"
