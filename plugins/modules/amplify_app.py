#!/usr/bin/python
# -*- coding: utf-8 -*-

# Copyright: iotfleet developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: amplify_app
version_added: 0.1.0
short_description: Manage an AWS Amplify Hosting app, its branches and its custom domain
description:
  - Creates, updates and deletes an AWS Amplify app without a connected repository (an app that
    receives manual deployments), its branches and, optionally, a custom domain.
  - The app is found by its name. Amplify allows two apps with the same name; when there are two,
    the module fails and names their ids instead of guessing.
  - Every input is checked before anything is written, including that each sub-domain of
    O(custom_domain) points at a branch that will exist.
  - Order of writes, so that nothing refers to something missing; the app and its settings,
    branches created or updated, the custom domain, branches deleted.
options:
  name:
    description:
      - The name of the app; 1 to 255 letters, digits, C(.), C(_) or C(-).
    type: str
    required: true
  state:
    description:
      - Whether the app should exist. V(absent) deletes the app with its branches, deployments and domains.
    type: str
    default: present
    choices: [present, absent]
  description:
    description:
      - The description of the app. When omitted, it is left as it is.
    type: str
  platform:
    description:
      - The platform of the app. V(WEB) serves static files.
    type: str
    default: WEB
    choices: [WEB, WEB_COMPUTE, WEB_DYNAMIC]
  environment_variables:
    description:
      - The app's environment variables, set exactly to these (names to string values).
      - Numbers are turned into strings; other non-string values fail. They are not secret
        (Amplify shows them in its console); keep secrets in M(iotfleet.aws.amplify_secret).
      - When omitted, they are left as they are.
    type: dict
  branches:
    description:
      - The branches of the app. Each is created, or updated when a given setting differs.
      - When omitted, the app's branches are left as they are.
    type: list
    elements: dict
    suboptions:
      name:
        description: The name of the branch, such as C(main).
        type: str
        required: true
      description:
        description: The description of the branch. When omitted, it is left as it is.
        type: str
      stage:
        description: The stage of the branch. When omitted, it is left as it is.
        type: str
        choices: [PRODUCTION, BETA, DEVELOPMENT, EXPERIMENTAL, PULL_REQUEST]
      environment_variables:
        description:
          - The branch's environment variables, set exactly to these. When omitted, they are left as they are.
        type: dict
      enable_auto_build:
        description: Build automatically on each commit; off for an app that gets manual deployments.
        type: bool
        default: false
  purge_branches:
    description:
      - Delete branches of the app that are not in O(branches), with their deployments.
      - Only applies when O(branches) is given.
    type: bool
    default: true
  custom_domain:
    description:
      - A custom domain for the app; created, or updated when its sub-domains differ.
      - When omitted, the app's domains are left as they are; other domains of the app are never changed.
      - AWS then waits for DNS verification of the domain; the module does not wait for it.
    type: dict
    suboptions:
      domain_name:
        description: The domain, such as C(example.com).
        type: str
        required: true
      sub_domains:
        description: Which branch each sub-domain serves, set exactly to this list.
        type: list
        elements: dict
        required: true
        suboptions:
          prefix:
            description: The sub-domain prefix, such as C(www); an empty string for the domain itself.
            type: str
            required: true
          branch:
            description: The branch the sub-domain serves; it must be in O(branches) or exist already.
            type: str
            required: true
      enable_auto_sub_domain:
        description: Create sub-domains for new branches automatically.
        type: bool
        default: false
notes:
  - In check mode, the returned app shows AWS unchanged; the diff shows what would change.
author:
  - iotfleet developers (@iotfleet)
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.tags
  - amazon.aws.boto3
  - iotfleet.aws.iot
"""

EXAMPLES = r"""
- name: The dashboard's Amplify app with its production branch
  iotfleet.aws.amplify_app:
    name: "{{ iotfleet_prefix }}-dashboard"
    description: IoT fleet dashboard
    environment_variables:
      GRAPHQL_REGION: "{{ aws_region }}"
    branches:
      - name: main
        stage: PRODUCTION
    tags:
      project: iotfleet
  register: amplify

- name: Serve the branch on a custom domain
  iotfleet.aws.amplify_app:
    name: "{{ iotfleet_prefix }}-dashboard"
    branches:
      - name: main
        stage: PRODUCTION
    custom_domain:
      domain_name: example.com
      sub_domains:
        - prefix: dashboard
          branch: main

- name: Delete the app
  iotfleet.aws.amplify_app:
    name: "{{ iotfleet_prefix }}-dashboard"
    state: absent
"""

RETURN = r"""
app:
  description:
    - The app as it is in AWS after the task; empty when it does not exist (after O(state=absent),
      or in check mode before it is created).
  returned: always
  type: dict
  contains:
    app_id:
      description: The id of the app.
      type: str
      returned: when the app exists
      sample: d1x2y3z4w5v6u7
    arn:
      description: The ARN of the app.
      type: str
      returned: when the app exists
      sample: arn:aws:amplify:eu-north-1:123456789012:apps/d1x2y3z4w5v6u7
    name:
      description: The name of the app.
      type: str
      returned: when the app exists
      sample: iotfleet-dashboard
    description:
      description: The description of the app.
      type: str
      returned: when the app exists
      sample: IoT fleet dashboard
    platform:
      description: The platform of the app.
      type: str
      returned: when the app exists
      sample: WEB
    default_domain:
      description: The app's domain on amplifyapp.com; a branch is served at C(https://<branch>.<default_domain>).
      type: str
      returned: when the app exists
      sample: d1x2y3z4w5v6u7.amplifyapp.com
    environment_variables:
      description: The app's environment variables.
      type: dict
      returned: when the app exists
      sample: {"GRAPHQL_REGION": "eu-north-1"}
    tags:
      description: The tags of the app.
      type: dict
      returned: when the app exists
      sample: {"project": "iotfleet"}
    branches:
      description: The branches of the app, sorted by name.
      type: list
      elements: dict
      returned: when the app exists
      contains:
        name:
          description: The name of the branch.
          type: str
          returned: always
          sample: main
        arn:
          description: The ARN of the branch.
          type: str
          returned: always
          sample: arn:aws:amplify:eu-north-1:123456789012:apps/d1x2y3z4w5v6u7/branches/main
        stage:
          description: The stage of the branch.
          type: str
          returned: always
          sample: PRODUCTION
        description:
          description: The description of the branch.
          type: str
          returned: always
          sample: ""
        environment_variables:
          description: The branch's environment variables.
          type: dict
          returned: always
          sample: {}
        enable_auto_build:
          description: Whether the branch builds on each commit.
          type: bool
          returned: always
          sample: false
    custom_domain:
      description: The custom domain of O(custom_domain) as AWS has it.
      type: dict
      returned: when O(custom_domain) is given and the domain exists
      contains:
        domain_name:
          description: The domain.
          type: str
          returned: always
          sample: example.com
        status:
          description: AWS's status of the domain (C(PENDING_VERIFICATION), C(AVAILABLE)...).
          type: str
          returned: always
          sample: PENDING_VERIFICATION
        enable_auto_sub_domain:
          description: Whether sub-domains are created for new branches.
          type: bool
          returned: always
          sample: false
        sub_domains:
          description: The sub-domains, sorted by prefix.
          type: list
          elements: dict
          returned: always
          sample: [{"prefix": "dashboard", "branch": "main", "verified": false}]
diff:
  description: The app's settings, branches and custom domain before and after the task.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: The app before the task.
      type: dict
      returned: when diff mode is on
    after:
      description: The app after the task.
      type: dict
      returned: when diff mode is on
"""

from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import APP_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import BRANCH_NAME_RE
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import AnsibleAmplifyError
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import amplify_client
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import create_app
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import create_branch
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import create_domain_association
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import delete_app
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import delete_branch
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import get_app
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import get_domain_association
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import list_apps
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import list_branches
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import list_tags
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import tag_resource
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import untag_resource
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import update_app
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import update_branch
from ansible_collections.iotfleet.aws.plugins.module_utils.amplify import update_domain_association
from ansible_collections.iotfleet.aws.plugins.module_utils.iot import IoTModule

# Branch settings as the module names them, and as Amplify's API does.
BRANCH_SETTINGS = {
    "description": "description",
    "stage": "stage",
    "environment_variables": "environmentVariables",
    "enable_auto_build": "enableAutoBuild",
}


# Input checks, all before the first AWS call that writes.


def environment(module, option, variables):
    """The variables as Amplify stores them (str -> str); fails naming the variable."""
    if variables is None:
        return None
    result = {}
    for key, value in variables.items():
        if not key:
            module.fail_json(msg=f"{option}: a variable name is empty")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            module.fail_json(msg=f"{option}.{key}: {value!r} is not a string; quote the value in YAML")
        result[key] = str(value)
    return result


def wanted_branches(module):
    """{name: settings (only those given)}, or None when branches are not managed."""
    if module.params["branches"] is None:
        return None
    branches = {}
    for index, options in enumerate(module.params["branches"]):
        name = options["name"]
        if not BRANCH_NAME_RE.match(name):
            module.fail_json(
                msg=f"branches[{index}]: {name!r} is not a valid branch name; it must match {BRANCH_NAME_RE.pattern}"
            )
        if name in branches:
            module.fail_json(msg=f"branches[{index}]: branch {name!r} is listed twice")
        settings = {key: options[key] for key in BRANCH_SETTINGS if options[key] is not None}
        if "environment_variables" in settings:
            settings["environment_variables"] = environment(
                module, f"branches[{index}].environment_variables", settings["environment_variables"]
            )
        branches[name] = settings
    return branches


def check_options(module):
    if not APP_NAME_RE.match(module.params["name"]):
        module.fail_json(
            msg=f"name: {module.params['name']!r} is not a valid app name; it must match {APP_NAME_RE.pattern}"
        )
    return dict(
        environment_variables=environment(module, "environment_variables", module.params["environment_variables"]),
        branches=wanted_branches(module),
    )


def check_domain(module, wanted, live_branches):
    """Fail before any write when a sub-domain points at a branch that will not exist."""
    domain = module.params["custom_domain"]
    if domain is None:
        return
    will_exist = set(live_branches)
    if wanted["branches"] is not None:
        will_exist = set(wanted["branches"]) | (set() if module.params["purge_branches"] else will_exist)
    prefixes = set()
    for index, sub_domain in enumerate(domain["sub_domains"]):
        where = f"custom_domain.sub_domains[{index}]"
        if sub_domain["branch"] not in will_exist:
            module.fail_json(
                msg=(
                    f"{where}: branch {sub_domain['branch']!r} is not a branch of the app; "
                    f"add it to branches (branches: {', '.join(sorted(will_exist)) or 'none'})"
                )
            )
        if sub_domain["prefix"] in prefixes:
            module.fail_json(msg=f"{where}: prefix {sub_domain['prefix']!r} is listed twice")
        prefixes.add(sub_domain["prefix"])


# The live app.


def find_app(module, client, name):
    """The app named `name`, or None; fails when two share the name."""
    matches = [app for app in list_apps(client) if app["name"] == name]
    if len(matches) > 1:
        module.fail_json(
            msg=(
                f"name: {len(matches)} Amplify apps are named {name!r} (ids {', '.join(a['appId'] for a in matches)}); "
                "the module cannot tell which one to manage. Delete or rename the extra ones."
            )
        )
    return matches[0] if matches else None


def app_view(app):
    return dict(
        name=app["name"],
        description=app.get("description") or "",
        platform=app.get("platform"),
        environment_variables=dict(app.get("environmentVariables") or {}),
    )


def branch_view(branch):
    return dict(
        description=branch.get("description") or "",
        stage=branch.get("stage"),
        environment_variables=dict(branch.get("environmentVariables") or {}),
        enable_auto_build=bool(branch.get("enableAutoBuild")),
    )


def domain_view(domain):
    if domain is None:
        return {}
    sub_domains = [sub["subDomainSetting"] for sub in domain.get("subDomains") or []]
    return dict(
        domain_name=domain["domainName"],
        enable_auto_sub_domain=bool(domain.get("enableAutoSubDomain")),
        sub_domains=sorted_sub_domains(dict(prefix=s.get("prefix", ""), branch=s["branchName"]) for s in sub_domains),
    )


def sorted_sub_domains(sub_domains):
    return sorted((dict(prefix=s["prefix"], branch=s["branch"]) for s in sub_domains), key=lambda s: s["prefix"])


def wanted_domain(module):
    domain = module.params["custom_domain"]
    return dict(
        domain_name=domain["domain_name"],
        enable_auto_sub_domain=domain["enable_auto_sub_domain"],
        sub_domains=sorted_sub_domains(domain["sub_domains"]),
    )


# The app.


def wanted_app(module, wanted, current):
    app = dict(current)
    app.update(name=module.params["name"], platform=module.params["platform"])
    if module.params["description"] is not None:
        app["description"] = module.params["description"]
    if wanted["environment_variables"] is not None:
        app["environment_variables"] = wanted["environment_variables"]
    return app


def app_params(app):
    params = dict(platform=app["platform"], environmentVariables=app["environment_variables"])
    if app["description"]:
        params["description"] = app["description"]
    return params


def create(module, client, wanted):
    app = wanted_app(module, wanted, dict(description="", environment_variables={}))
    if module.check_mode:
        return None, app
    params = app_params(app)
    if module.params["tags"]:
        params["tags"] = module.params["tags"]
    return create_app(client, name=app["name"], **params), app


def ensure_app_settings(module, client, app, wanted, before, after):
    current = app_view(app)
    after["app"] = wanted_app(module, wanted, current)
    before["app"] = current
    if after["app"] == current:
        return False
    if not module.check_mode:
        update_app(client, app["appId"], **app_params(after["app"]))
    return True


def ensure_tags(module, client, app, before, after):
    if module.params["tags"] is None:
        return False
    current = list_tags(client, app["appArn"])
    to_set, to_remove = compare_aws_tags(current, module.params["tags"], module.params["purge_tags"])
    before["tags"] = current
    after["tags"] = {key: value for key, value in current.items() if key not in to_remove}
    after["tags"].update(to_set)
    if not to_set and not to_remove:
        return False
    if not module.check_mode:
        if to_remove:
            untag_resource(client, app["appArn"], to_remove)
        if to_set:
            tag_resource(client, app["appArn"], to_set)
    return True


# Branches.


def branch_params(settings):
    return {BRANCH_SETTINGS[key]: value for key, value in settings.items()}


def plan_branches(module, live, wanted):
    """(to create, to update, to delete): {name: settings to send}, and the branches' views before and after."""
    if wanted is None:
        return ({}, {}, []), {}, {}
    to_create, to_update = {}, {}
    before = {name: branch_view(branch) for name, branch in live.items()}
    after = {name: dict(view) for name, view in before.items()}
    for name, settings in wanted.items():
        if name not in live:
            to_create[name] = settings
            after[name] = dict(branch_view({}), **settings)
            continue
        changes = {key: value for key, value in settings.items() if before[name][key] != value}
        if changes:
            to_update[name] = changes
            after[name].update(changes)
    to_delete = sorted(name for name in live if name not in wanted) if module.params["purge_branches"] else []
    for name in to_delete:
        del after[name]
    return (to_create, to_update, to_delete), before, after


def write_branches(module, client, app_id, plan):
    to_create, to_update, _to_delete = plan
    if module.check_mode:
        return
    for name, settings in to_create.items():
        create_branch(client, app_id, name, **branch_params(settings))
    for name, changes in to_update.items():
        update_branch(client, app_id, name, **branch_params(changes))


def delete_branches(module, client, app_id, plan):
    if module.check_mode:
        return
    for name in plan[2]:
        delete_branch(client, app_id, name)


# The custom domain.


def ensure_domain(module, client, app_id, before, after):
    if module.params["custom_domain"] is None:
        return False
    wanted = wanted_domain(module)
    current = get_domain_association(client, app_id, wanted["domain_name"]) if app_id else None
    before["custom_domain"] = domain_view(current)
    after["custom_domain"] = wanted
    if before["custom_domain"] == wanted:
        return False
    if not module.check_mode:
        params = dict(
            enableAutoSubDomain=wanted["enable_auto_sub_domain"],
            subDomainSettings=[dict(prefix=s["prefix"], branchName=s["branch"]) for s in wanted["sub_domains"]],
        )
        if current is None:
            create_domain_association(client, app_id, wanted["domain_name"], **params)
        else:
            update_domain_association(client, app_id, wanted["domain_name"], **params)
    return True


# Results.


def describe_app(module, client, app_id):
    app = get_app(client, app_id) if app_id else None
    if app is None:
        return {}
    result = dict(
        app_id=app["appId"],
        arn=app["appArn"],
        default_domain=app.get("defaultDomain"),
        tags=list_tags(client, app["appArn"]),
        branches=[
            dict(name=branch["branchName"], arn=branch.get("branchArn"), **branch_view(branch))
            for branch in sorted(list_branches(client, app_id), key=lambda branch: branch["branchName"])
        ],
        **app_view(app),
    )
    if module.params["custom_domain"] is not None:
        domain = get_domain_association(client, app_id, module.params["custom_domain"]["domain_name"])
        if domain is not None:
            result["custom_domain"] = dict(
                domain_view(domain),
                status=domain.get("domainStatus"),
                sub_domains=sorted(
                    (
                        dict(
                            prefix=sub["subDomainSetting"].get("prefix", ""),
                            branch=sub["subDomainSetting"]["branchName"],
                            verified=bool(sub.get("verified")),
                        )
                        for sub in domain.get("subDomains") or []
                    ),
                    key=lambda sub: sub["prefix"],
                ),
            )
    return result


def ensure_present(module, client, current, wanted):
    live_branches = {b["branchName"]: b for b in list_branches(client, current["appId"])} if current else {}
    check_domain(module, wanted, live_branches)
    before, after = {}, {}
    if current is None:
        app, after["app"] = create(module, client, wanted)
        if module.params["tags"]:
            after["tags"] = module.params["tags"]
        changed = True
    else:
        app = current
        changed = ensure_app_settings(module, client, app, wanted, before, after)
        changed |= ensure_tags(module, client, app, before, after)
    app_id = app["appId"] if app else None
    plan, before_branches, after_branches = plan_branches(module, live_branches, wanted["branches"])
    if wanted["branches"] is not None:
        after["branches"] = after_branches
        if current is not None:
            before["branches"] = before_branches
    changed |= any(plan)
    write_branches(module, client, app_id, plan)
    # Manual deployments (issue 7) belong here: they need their branch to exist and must not race its deletion.
    changed |= ensure_domain(module, client, app_id, before, after)
    delete_branches(module, client, app_id, plan)
    if module.check_mode:
        app_id = current["appId"] if current else None
    return changed, before, after, describe_app(module, client, app_id)


def ensure_absent(module, client, current):
    if current is None:
        return False, {}, {}, {}
    before = dict(app=app_view(current))
    if module.check_mode:
        return True, before, {}, describe_app(module, client, current["appId"])
    delete_app(client, current["appId"])
    return True, before, {}, {}


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        description=dict(type="str"),
        platform=dict(type="str", default="WEB", choices=["WEB", "WEB_COMPUTE", "WEB_DYNAMIC"]),
        environment_variables=dict(type="dict"),
        branches=dict(
            type="list",
            elements="dict",
            options=dict(
                name=dict(type="str", required=True),
                description=dict(type="str"),
                stage=dict(type="str", choices=["PRODUCTION", "BETA", "DEVELOPMENT", "EXPERIMENTAL", "PULL_REQUEST"]),
                environment_variables=dict(type="dict"),
                enable_auto_build=dict(type="bool", default=False),
            ),
        ),
        purge_branches=dict(type="bool", default=True),
        custom_domain=dict(
            type="dict",
            options=dict(
                domain_name=dict(type="str", required=True),
                sub_domains=dict(
                    type="list",
                    elements="dict",
                    required=True,
                    options=dict(prefix=dict(type="str", required=True), branch=dict(type="str", required=True)),
                ),
                enable_auto_sub_domain=dict(type="bool", default=False),
            ),
        ),
        tags=dict(type="dict", aliases=["resource_tags"]),
        purge_tags=dict(type="bool", default=True),
    )
    module = IoTModule(argument_spec=argument_spec, supports_check_mode=True)
    wanted = check_options(module) if module.params["state"] == "present" else None
    client = amplify_client(module)
    try:
        current = find_app(module, client, module.params["name"])
        if module.params["state"] == "present":
            changed, before, after, app = ensure_present(module, client, current, wanted)
        else:
            changed, before, after, app = ensure_absent(module, client, current)
    except AnsibleAmplifyError as e:
        module.fail_json_aws_error(e)
    result = dict(changed=changed, app=app)
    if module._diff:
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
