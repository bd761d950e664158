"""Write the image's identity into the image, for every record made inside it (environment.image).

    python images/image_info.py /opt/dlbench/image.json images/cpu/requirements.lock=/opt/dlbench/requirements.lock
    python images/image_info.py OUT.json images/cuda/torch.lock=/opt/dlbench/torch.lock images/cuda/tfjax.lock=...

Run by images/*/Dockerfile at build time; the values come from build arguments (IMAGE, VERSION,
REVISION, SOURCE, BASE_IMAGE, and DLBENCH_PYTHONS: which interpreter runs which framework) in the
environment. runner.machine.where.image() reads the file back through $DLBENCH_IMAGE_INFO. Each lock's
sha256 (by its path in the repository) says exactly which set of packages each environment holds.
"""

import hashlib
import json
import os
import sys
import time

out, pairs = sys.argv[1], sys.argv[2:]
locks = {}
for pair in pairs:  # repo path=path in the image
    name, _, path = pair.partition("=")
    with open(path, "rb") as f:
        locks[name] = hashlib.sha256(f.read()).hexdigest()
info = {
    "image": os.environ.get("IMAGE") or None,
    "version": os.environ.get("VERSION") or None,
    "revision": os.environ.get("REVISION") or None,
    "source": os.environ.get("SOURCE") or None,
    "base_image": os.environ.get("BASE_IMAGE") or None,
    "locks": locks,
    "pythons": json.loads(os.environ.get("DLBENCH_PYTHONS") or "{}"),
    "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
}
with open(out, "w") as f:
    json.dump(info, f, indent=1)
print(json.dumps(info))
