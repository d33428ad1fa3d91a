# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # Attributes shared by every iotfleet.aws module that talks to AWS.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  action_group:
    description: Use C(group/iotfleet.aws.aws) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - iotfleet.aws.aws
"""
