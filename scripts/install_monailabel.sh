#!/usr/bin/env bash
# Install MONAI Label 0.8.5 beside this project, for serving our segmentation bundles (docs/monailabel.md).
#
#   bash scripts/install_monailabel.sh          # into the environment of `python` (PYTHON=... to choose)
#
# Run it after the project's own install (torch, monai, nibabel, itk come from there). Idempotent: a second
# run installs nothing. It never installs, upgrades or replaces torch: the MONAI Label packages are installed
# with --no-deps from the pinned list in scripts/monailabel-requirements.txt, a few generic libraries are
# installed only if missing, and any resolution that would touch torch fails against a torch==<installed>
# constraint. The script checks at the end that torch is unchanged and that the server modules import.
set -euo pipefail

PY=${PYTHON:-python}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! torch_before=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    echo "torch is not installed for $PY: install the project first (see README.md); this script never installs torch" >&2
    exit 1
fi

constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_before}" > "$constraints"

start=$(date +%s)
# every pin already installed at its version: nothing to do
if "$PY" - "$HERE/monailabel-requirements.txt" <<'PYPINS'
import sys
from importlib.metadata import PackageNotFoundError, version

pins = [line.split("#")[0].strip() for line in open(sys.argv[1])]
for name, _, wanted in (p.partition("==") for p in pins if p):
    try:
        if version(name) != wanted:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PYPINS
then
    echo "MONAI Label pins already installed"
else
    # generic libraries MONAI Label and its pinned packages use; installed only where missing
    "$PY" -m pip install -q -c "$constraints" \
        "pydantic>=2.7" "pydantic-settings>=2.2.1" python-dotenv "requests>=2.31" click pyyaml scipy pillow \
        "networkx>=2.8" packaging rsa pyasn1 idna sniffio "typing_extensions>=4.5" jsonschema filelock
    # MONAI Label and the packages its server and the monaibundle app import, pinned, without their requirements
    "$PY" -m pip install -q --no-deps -c "$constraints" -r "$HERE/monailabel-requirements.txt"
fi

# every requirement of every pinned package is installed, except the ones left out on purpose ("# omit:")
"$PY" - "$HERE/monailabel-requirements.txt" <<'PYDEPS'
import sys
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

lines = open(sys.argv[1]).read().splitlines()
omitted = {canonicalize_name(n) for line in lines if line.startswith("# omit:") for n in line[7:].split()}
pins = [line.split("#")[0].strip().partition("==")[0] for line in lines if line.split("#")[0].strip()]
missing = []
for pin in pins:
    for text in requires(pin) or []:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if canonicalize_name(requirement.name) in omitted:
            continue
        try:
            version(requirement.name)
        except PackageNotFoundError:
            missing.append(f"{requirement.name} (required by {pin})")
if missing:
    sys.exit("install_monailabel.sh: not installed: " + ", ".join(sorted(set(missing)))
             + "; add them to scripts/monailabel-requirements.txt")
PYDEPS

torch_after=$("$PY" -c 'import torch; print(torch.__version__)')
if [ "$torch_before" != "$torch_after" ]; then
    echo "torch changed from $torch_before to $torch_after: this must not happen, please report it" >&2
    exit 1
fi

# the server and the monaibundle app's modules import (through the launcher's torchvision check)
"$PY" - "$HERE" <<'PYCHECK'
import sys

sys.path.insert(0, sys.argv[1])
import monailabel_server

if not monailabel_server.torchvision_importable():
    monailabel_server.use_stand_in()
import monailabel
import monailabel.app  # noqa: F401  (FastAPI app, endpoints, datastore)
import monailabel.tasks.infer.bundle  # noqa: F401  (BundleInferTask, used by the monaibundle app)

print(f"monailabel {monailabel.__version__} ready")
PYCHECK
echo "torch $torch_after unchanged; took $(( $(date +%s) - start )) s"
