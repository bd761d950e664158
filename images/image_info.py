"""Write the image's identity into the image, for every record made inside it (environment.image).

    python images/image_info.py /opt/dlbench/image.json images/cpu/requirements.lock /opt/dlbench/requirements.lock

Run by images/*/Dockerfile at build time; the values come from build arguments (IMAGE, VERSION,
REVISION, SOURCE, BASE_IMAGE) in the environment. runner.machine.where.image() reads the file back
through $DLBENCH_IMAGE_INFO. The lock's sha256 says exactly which set of packages the image holds.
"""

import hashlib
import json
import os
import sys
import time

out, lock_name, lock_path = sys.argv[1:4]
with open(lock_path, "rb") as f:
    lock_sha256 = hashlib.sha256(f.read()).hexdigest()
info = {
    "image": os.environ.get("IMAGE") or None,
    "version": os.environ.get("VERSION") or None,
    "revision": os.environ.get("REVISION") or None,
    "source": os.environ.get("SOURCE") or None,
    "base_image": os.environ.get("BASE_IMAGE") or None,
    "lock_file": lock_name,
    "lock_sha256": lock_sha256,
    "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
}
with open(out, "w") as f:
    json.dump(info, f, indent=1)
print(json.dumps(info))
