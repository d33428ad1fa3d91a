#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: esp32_fs_image
version_added: 0.1.0
short_description: Build an ESP32 board's filesystem (credentials) image, deterministically
description:
  - Builds the LittleFS image of one board's filesystem partition - the application, its
    C(/config.json) (thing name, endpoint, Wi-Fi settings, sensor), the device certificate, the
    device's private key and the root CA - and keeps it in the file O(path), mode 0600.
  - The same inputs always give the same bytes, so the file is written only when its bytes differ
    (or its mode is not 0600), and the board's flash MD5 can be compared with the image's
    (M(iotfleet.aws.esp32_flash)).
  - The partition's offset and size come from the partition table of the shared MicroPython image
    O(base_image) and the board's flash size (MicroPython 1.26 and later put the filesystem from the
    end of the last partition to the end of the flash), or from O(size).
  - The configuration is checked by the application's own C(settings.py) in O(app_dir), the one that
    reads it on the board, so a board never gets a configuration its firmware would refuse.
  - The image holds the private key. Nothing of the files' contents is returned, logged or shown in a
    diff (names and sizes only).
  - Run it on the controller, next to the key store (C(delegate_to) the controller).
options:
  path:
    description:
      - The image file to keep, for example C(<key store>/<thing>.fs.img). Its folder must exist.
    type: path
    required: true
  app_dir:
    description:
      - The application folder (C(firmware/app) of the collection), whose C(*.py) files go into the
        image - C(boot.py) and C(main.py) at the root, the others in C(/app).
    type: path
    required: true
  config:
    description:
      - The content of C(/config.json) except the Wi-Fi password - C(thing_name), C(endpoint), C(wifi_ssid)
        (required), and optionally C(port), C(sensor_type), C(sensor_pin), C(send_interval_seconds),
        C(keepalive_seconds), C(watchdog_timeout_ms), C(backoff_base_seconds), C(backoff_cap_seconds).
      - Integer settings given as strings of digits (as templates may render them) are taken as integers.
    type: dict
    required: true
  wifi_password:
    description:
      - The Wi-Fi password, written into C(/config.json). Keep it in a vault.
    type: str
  certificate:
    description:
      - The device certificate file (PEM), for example C(<key store>/<thing>.crt).
    type: path
    required: true
  private_key:
    description:
      - The device's private key file (PEM), for example C(<key store>/<thing>.key).
    type: path
    required: true
  root_ca:
    description:
      - The root CA certificate file (PEM) that the device trusts the endpoint with (Amazon Root CA 1 on AWS).
    type: path
    required: true
  base_image:
    description:
      - The shared MicroPython image (merged C(firmware.bin)) whose partition table gives the filesystem
        partition. Requires O(chip).
      - Give this or O(size).
    type: path
  chip:
    description:
      - The board's chip, C(esp32) or C(esp32s3) (esptool's C(ESP32-S3) works too).
    type: str
  flash_size:
    description:
      - The board's flash size, such as C(8MB) or C(8388608) (RV(iotfleet.aws.esp32_info#module:flash_size)).
      - Needed when the image's partition table has no C(vfs) partition (MicroPython 1.26 and later).
    type: str
  size:
    description:
      - The partition size in bytes (or C(2MB), C(0x200000)), when no base image is given.
    type: str
author:
  - iotfleet developers (@iotfleet)
requirements:
  - littlefs-python
notes:
  - This module builds a file on the host it runs on; it does not talk to a board or to AWS and is not in
    the C(group/iotfleet.aws.aws) action group.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Builds the image in memory and compares it with the file; writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The image's MD5 and its files' names and sizes, before and after.
"""

EXAMPLES = r"""
- name: Build the board's credentials image on the controller
  iotfleet.aws.esp32_fs_image:
    path: "{{ key_store }}/{{ thing_name }}.fs.img"
    app_dir: "{{ role_path }}/../../firmware/app"
    config:
      thing_name: "{{ thing_name }}"
      endpoint: a1b2c3d4e5f6g7-ats.iot.eu-north-1.amazonaws.com
      port: 8883
      wifi_ssid: "{{ wifi_ssid }}"
      sensor_type: DHT22
      sensor_pin: 7
    wifi_password: "{{ wifi_password }}"
    certificate: "{{ key_store }}/{{ thing_name }}.crt"
    private_key: "{{ key_store }}/{{ thing_name }}.key"
    root_ca: "{{ playbook_dir }}/AmazonRootCA1.pem"
    base_image: /srv/firmware/ESP32_GENERIC_S3-20250911-v1.26.1.bin
    chip: esp32s3
    flash_size: 8MB
  delegate_to: localhost
  register: fs_image

- name: Flash it with the shared image
  iotfleet.aws.esp32_flash:
    esp32_port: /dev/ttyUSB0
    regions: "{{ fs_image.regions }}"
"""

RETURN = r"""
path:
  description: The image file.
  returned: always
  type: str
  sample: /srv/fleet/keys/iotfleet/4827E2E59190.fs.img
size:
  description: The image size in bytes, the size of the filesystem partition.
  returned: always
  type: int
  sample: 6291456
md5:
  description: The MD5 of the image (what the board's flash is compared with).
  returned: always
  type: str
  sample: 0f343b0931126a20f133d67c2b018a3b
sha256:
  description: The SHA-256 of the image.
  returned: always
  type: str
  sample: 5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef
files:
  description: The files in the image, with their sizes in bytes (never their contents).
  returned: always
  type: dict
  sample: {"/boot.py": 120, "/main.py": 48, "/config.json": 201, "/certs/device.crt": 563}
changed_files:
  description: The files whose content differs from the image that was in O(path) (all of them when there was none).
  returned: always
  type: list
  elements: str
  sample: ["/certs/device.crt"]
layout:
  description: The board's flash layout, when O(base_image) is given.
  returned: when O(base_image) is given
  type: dict
  contains:
    chip:
      description: The chip.
      type: str
      sample: esp32s3
    image_offset:
      description: The flash offset of the shared image.
      type: int
      sample: 0
    image_size:
      description: The size of the shared image.
      type: int
      sample: 1646592
    flash_size:
      description: The flash size in bytes, or null when not given.
      type: int
      sample: 8388608
    partitions:
      description: The partition table of the shared image.
      type: list
      elements: dict
      sample: [{"label": "factory", "type": 0, "subtype": 0, "offset": 65536, "size": 2031616, "flags": 0}]
    filesystem:
      description: The filesystem partition - C(label), C(offset), C(size), C(block_size), C(block_count), and
        C(implicit) (true when the table has no C(vfs) entry and the firmware creates it at boot).
      type: dict
      sample: {"label": "vfs", "offset": 2097152, "size": 6291456, "block_size": 4096, "block_count": 1536,
               "implicit": true}
regions:
  description: The O(iotfleet.aws.esp32_flash#module:regions) that put the shared image and this image on the board.
  returned: when O(base_image) is given
  type: list
  elements: dict
  sample:
    - {"offset": 0, "image": "/srv/firmware/base.bin"}
    - {"offset": 2097152, "image": "/srv/keys/4827E2E59190.fs.img"}
"""

import hashlib
import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.basic import missing_required_lib

from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import HAS_LITTLEFS
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import LITTLEFS_IMPORT_ERROR
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import FsImageError
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import LayoutError
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import build_board_image
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import check_fs_image
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import flash_layout
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import flash_regions
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import load_settings
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import parse_size
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import read_file
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import read_image
from ansible_collections.iotfleet.aws.plugins.module_utils.esp32_image import write_private

IMAGE_MODE = 0o600


class InputError(ValueError):
    """An input the module cannot use; the message names the option."""


def build_config(module, settings):
    """config.json's content: the option, integers where the schema wants them, and the Wi-Fi password."""
    config = dict(module.params["config"])
    if "wifi_password" in config:
        raise InputError("config: pass the Wi-Fi password in wifi_password (no_log), not in config.")
    for name, default in settings.DEFAULTS.items():
        value = config.get(name)
        if isinstance(default, int) and isinstance(value, str) and value.strip().isdigit():
            config[name] = int(value)
    if module.params["wifi_password"] is not None:
        config["wifi_password"] = module.params["wifi_password"]
    return config


def partition(module):
    """(layout or None, partition size)."""
    params = module.params
    if params["base_image"] is None:
        try:
            return None, parse_size(params["size"])
        except ValueError:
            raise InputError(f"size: {params['size']!r} is not a size (bytes, or such as 2MB or 0x200000).") from None
    if not params["chip"]:
        raise InputError("chip: required with base_image (esp32 or esp32s3).")
    try:
        flash_size = parse_size(params["flash_size"])
    except ValueError:
        raise InputError(f"flash_size: {params['flash_size']!r} is not a size (such as 4MB or 4194304).") from None
    try:
        layout = flash_layout(params["base_image"], params["chip"], flash_size)
    except LayoutError as e:
        raise InputError(f"base_image: {e}.") from None
    return layout, layout["filesystem"]["size"]


def read_pem(option, path):
    try:
        return read_file(path, option)
    except LayoutError as e:
        raise InputError(f"{option}: {e}.") from None


def existing_image(path):
    """(bytes or None, mode or None) of the file in `path`."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
    except FileNotFoundError:
        return None, None
    except OSError as e:
        raise InputError(f"path: cannot read {path}: {e.strerror}.") from None


def image_files(image):
    """{name: bytes} of an image, or {} when it is not one (a partial or foreign file)."""
    if image is None:
        return {}
    try:
        return read_image(image)
    except (FsImageError, ValueError, RuntimeError):
        return {}


def build(module):
    params = module.params
    path = params["path"]
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(
            f"path: the folder {folder} does not exist (the key store is made by iotfleet.aws.device_keys)."
        )
    try:
        settings = load_settings(params["app_dir"])
    except FsImageError as e:
        raise InputError(f"app_dir: {e}.") from None
    layout, size = partition(module)
    config = build_config(module, settings)
    try:
        image = build_board_image(
            config,
            read_pem("certificate", params["certificate"]),
            read_pem("private_key", params["private_key"]),
            read_pem("root_ca", params["root_ca"]),
            size,
            params["app_dir"],
            settings,
        )
        if layout is not None:
            check_fs_image(layout, len(image))
    except (FsImageError, LayoutError) as e:
        raise InputError(str(e)) from None

    before, mode = existing_image(path)
    write = before != image
    changed = write or mode != IMAGE_MODE
    if changed and not module.check_mode:
        if write:
            write_private(path, image)
        else:
            os.chmod(path, IMAGE_MODE)

    old_files = image_files(before)
    new_files = read_image(image)
    result = dict(
        changed=changed,
        path=path,
        size=len(image),
        md5=hashlib.md5(image).hexdigest(),
        sha256=hashlib.sha256(image).hexdigest(),
        files={name: len(data) for name, data in sorted(new_files.items())},
        changed_files=sorted(
            name for name in set(new_files) | set(old_files) if old_files.get(name) != new_files.get(name)
        ),
    )
    if layout is not None:
        result["layout"] = layout
        result["regions"] = flash_regions(layout, os.path.abspath(params["base_image"]), os.path.abspath(path))
    if module._diff:
        result["diff"] = dict(
            before=dict(
                md5=hashlib.md5(before).hexdigest() if before is not None else None,
                mode=f"{mode:04o}" if mode is not None else None,
                files={name: len(data) for name, data in sorted(old_files.items())},
            ),
            after=dict(md5=result["md5"], mode=f"{IMAGE_MODE:04o}", files=result["files"]),
        )
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            app_dir=dict(type="path", required=True),
            config=dict(type="dict", required=True),
            wifi_password=dict(type="str", no_log=True),
            certificate=dict(type="path", required=True),
            private_key=dict(type="path", required=True, no_log=False),
            root_ca=dict(type="path", required=True),
            base_image=dict(type="path"),
            chip=dict(type="str"),
            flash_size=dict(type="str"),
            size=dict(type="str"),
        ),
        mutually_exclusive=[("base_image", "size")],
        required_one_of=[("base_image", "size")],
        supports_check_mode=True,
    )
    if not HAS_LITTLEFS:
        module.fail_json(msg=missing_required_lib("littlefs-python"), exception=LITTLEFS_IMPORT_ERROR)
    try:
        result = build(module)
    except InputError as e:
        module.fail_json(msg=str(e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
