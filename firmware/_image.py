"""The collection's plugins/module_utils/esp32_image.py, loaded by its path: the one implementation.

The flash layout and the board filesystem image builder live in module_utils, because the Ansible
module esp32_fs_image (shipped by AnsiballZ, which only carries module_utils) builds the images on
the controller. firmware/ and plugins/ ship together in the collection, so the file is found next to
this package whether it runs from a checkout or from an installed collection. It imports nothing of
the collection, so loading it needs no `ansible_collections` on sys.path.
"""

import importlib.util
import sys
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "plugins" / "module_utils" / "esp32_image.py"
NAME = "firmware._esp32_image"


def _load():
    if NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(NAME, PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[NAME]
            raise
    return sys.modules[NAME]


esp32_image = _load()
