#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: lambda_package
version_added: 0.1.0
short_description: Build a byte-for-byte reproducible Lambda deployment zip
description:
  - Packs folders and files into a zip whose bytes depend only on the files' paths and contents
    (sorted entries, fixed timestamps and permissions, no caches), so the same source always gives
    the same C(CodeSha256) and re-deploying unchanged code changes nothing.
  - Writes the zip only when its bytes differ from the file already at O(dest).
  - Runs where the task runs (normally the controller); it does not talk to AWS.
options:
  sources:
    description:
      - What to pack. Folders are packed recursively with their content at O(sources[].dest) in the zip.
    type: list
    elements: dict
    required: true
    suboptions:
      src:
        description: A folder or a file on the host running the task.
        type: path
        required: true
      dest:
        description: Folder inside the zip that receives O(sources[].src) (the zip's root by default).
        type: str
        default: ""
  dest:
    description: Path of the zip to write.
    type: path
    required: true
author:
  - iotfleet developers (@iotfleet)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff lists the zip's entries before and after.
"""

EXAMPLES = r"""
- name: Package CoreTelemetry with the shared helpers
  iotfleet.aws.lambda_package:
    sources:
      - src: "{{ role_path }}/../../files/lambdas/CoreTelemetry"
      - src: "{{ role_path }}/../../files/lambdas/common"
    dest: /tmp/iotfleet/CoreTelemetry.zip
  register: core_telemetry_zip
"""

RETURN = r"""
dest:
  description: Path of the zip.
  returned: always
  type: str
  sample: /tmp/iotfleet/CoreTelemetry.zip
code_sha256:
  description: Base64 SHA-256 of the zip, the value AWS Lambda reports as C(CodeSha256).
  returned: always
  type: str
  sample: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=
files:
  description: The zip's entries, in order.
  returned: always
  type: list
  elements: str
  sample: [handler.py, common/settings.py]
size:
  description: Size of the zip in bytes.
  returned: always
  type: int
  sample: 4096
"""

import base64
import hashlib
import io
import os
import tempfile
import zipfile

from ansible.module_utils.basic import AnsibleModule

# The zip format cannot store dates before 1980; any fixed date makes the bytes reproducible.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def collect(sources):
    """(archive name, file path) pairs, sorted by archive name; refuses duplicates."""
    entries = {}
    for index, source in enumerate(sources):
        src = source["src"]
        prefix = source["dest"].strip("/")
        if os.path.isfile(src):
            pairs = [(os.path.basename(src), src)]
        elif os.path.isdir(src):
            pairs = []
            for folder, dirs, names in os.walk(src):
                dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
                for name in names:
                    if not name.endswith(SKIPPED_SUFFIXES):
                        path = os.path.join(folder, name)
                        pairs.append((os.path.relpath(path, src).replace(os.sep, "/"), path))
        else:
            raise ValueError(f"sources[{index}].src: {src} does not exist; give a folder or a file.")
        for name, path in pairs:
            arcname = f"{prefix}/{name}" if prefix else name
            if arcname in entries:
                raise ValueError(
                    f"sources[{index}]: {arcname} is packed twice (also from {entries[arcname]}); "
                    "give each source its own dest."
                )
            entries[arcname] = path
    return sorted(entries.items())


def build_zip(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in entries:
            info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, so the permissions above are honoured on extraction
            with open(path, "rb") as handle:
                archive.writestr(info, handle.read(), compresslevel=9)
    return buffer.getvalue()


def read_entries(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def write_atomically(path, data):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".lambda_package.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sources=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(src=dict(type="path", required=True), dest=dict(type="str", default="")),
            ),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    try:
        entries = collect(module.params["sources"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    if not entries:
        module.fail_json(msg="sources: nothing to pack; the folders are empty.")

    data = build_zip(entries)
    current = None
    if os.path.exists(dest):
        with open(dest, "rb") as handle:
            current = handle.read()
    changed = current != data
    before_files = read_entries(dest) if changed else [name for name, _path in entries]
    if changed and not module.check_mode:
        write_atomically(dest, data)

    result = dict(
        changed=changed,
        dest=dest,
        code_sha256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        files=[name for name, _path in entries],
        size=len(data),
    )
    if module._diff:
        result["diff"] = dict(before={"files": before_files}, after={"files": result["files"]})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
