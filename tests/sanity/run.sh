#!/usr/bin/env bash
# Run `ansible-test sanity` for the iotfleet.aws collection, reproducibly and without
# anything but the package registries (PyPI) on the network.
#
# Usage (from the repository root, after `make` has created .venv):
#     tests/sanity/run.sh [extra ansible-test sanity arguments, e.g. --test validate-modules]
#
# What it does and why:
#   * ansible-test refuses to run through a symlink and only finds dependencies in the same
#     `ansible_collections` root as the collection (ANSIBLE_COLLECTIONS_PATH is ignored), so the
#     collection is copied into a temporary `<tmp>/ansible_collections/iotfleet/aws`. Only files
#     git tracks or would track (`git ls-files -co --exclude-standard`) are copied, which is what
#     ansible-test itself would look at in a git checkout. amazon.aws and community.aws are
#     symlinked next to it from the pinned `ansible` package in .venv.
#   * HOME is pointed at tests/output/sanity-home (gitignored): ansible-test keeps its sanity
#     virtual environments in ~/.ansible/test/venv and its get-pip cache in ~/.ansible/test/cache,
#     so nothing lands in the real home directory and the second run reuses the venvs.
#   * `--venv --python 3.11`: ansible-test builds its own virtual environments and installs its
#     pinned sanity requirements into them with pip from the package index, so .venv stays free
#     of pylint & co. Its venv bootstrap downloads get-pip.py from ci-files.testing.ansible.com,
#     which is not reachable: a stand-in is written to the cache path it checks first (see
#     write_get_pip below).
#   * The results (junit XML, bot JSON) are copied to tests/output/sanity/ before the temporary
#     tree is deleted.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv"
PYTHON="$VENV/bin/python"
ANSIBLE_TEST="$VENV/bin/ansible-test"
PY_VERSION=3.11

if [[ ! -x "$ANSIBLE_TEST" ]]; then
    echo "run.sh: $ANSIBLE_TEST not found; create the venv first (make)" >&2
    exit 2
fi

# The collections that the pinned `ansible` package installs into .venv's site-packages.
SITE_COLLECTIONS="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ansible_collections"
for dep in amazon/aws community/aws; do
    if [[ ! -f "$SITE_COLLECTIONS/$dep/MANIFEST.json" ]]; then
        echo "run.sh: dependency collection $dep not found under $SITE_COLLECTIONS" >&2
        exit 2
    fi
done

# --- contained HOME for ansible-test's caches ------------------------------------------------
# ansible-test (and the pip it runs) only pass HOME, PATH and a few other variables on to the
# commands they run, so HOME is the one knob that relocates ~/.ansible/test. pip then reads
# $HOME/.config/pip too; the system-wide pip configuration (/etc/pip.conf, /etc/xdg/pip) still
# applies. Keep the path short: sanity venvs live at
# $HOME/.ansible/test/venv/<test>/<python>/<hash>/bin/python, and Linux shebangs are limited to
# 127 characters. SANITY_HOME overrides the location.
SANITY_HOME="${SANITY_HOME:-$REPO_ROOT/tests/output/sanity-home}"
mkdir -p "$SANITY_HOME"
SANITY_HOME="$(cd "$SANITY_HOME" && pwd -P)"
longest_shebang="$SANITY_HOME/.ansible/test/venv/sanity.validate-modules/$PY_VERSION/0123456789abcdef/bin/python"
if (( ${#longest_shebang} > 120 )); then
    echo "run.sh: $SANITY_HOME is too long for venv shebangs; set SANITY_HOME to a shorter folder" >&2
    exit 2
fi

# --- get-pip stand-in -------------------------------------------------------------------------
# ansible_test/_util/target/setup/requirements.py:bootstrap() uses
# ~/.ansible/test/cache/get_pip_<pip version with _>.py if it exists and otherwise downloads
# https://ci-files.testing.ansible.com/ansible-test/get-pip-<version>.py (unreachable here).
# The pip version comes from ansible_test._internal.python_requirements.get_venv_packages()
# ('24.2' in ansible-core 2.19). The script is run (via quiet_pip.py) as __main__ in a venv
# created with --without-pip, with the arguments of a get-pip.py call, e.g.
#   --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel
# The stand-in installs the pip bundled with Python (ensurepip, offline), then upgrades it to
# the requested version from the package index, as get-pip.py would.
PIP_VERSION="$("$PYTHON" -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'"$PY_VERSION"'"))["pip"])')"
GET_PIP="$SANITY_HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"
write_get_pip() {
    local tmp
    mkdir -p "$(dirname "$GET_PIP")"
    tmp="$(mktemp "$GET_PIP.XXXXXX")"
    cat >"$tmp" <<'EOF'
"""Offline stand-in for get-pip.py, written by tests/sanity/run.sh (do not edit here).

ansible-test runs this as __main__ inside a virtual environment created with --without-pip,
passing get-pip.py arguments (pip options, requirement specifiers, --no-setuptools, --no-wheel).
"""
import ensurepip
import os
import subprocess
import sys

args = sys.argv[1:]
no_setuptools = '--no-setuptools' in args
no_wheel = '--no-wheel' in args
pip_args = [a for a in args if a not in ('--no-setuptools', '--no-wheel')]

# pip (and on Python < 3.12, setuptools) from the wheels bundled with the interpreter: no network.
# ensurepip clears PIP_* variables and sets PIP_CONFIG_FILE=/dev/null in os.environ: restore them
# so that the pip calls below see the normal pip configuration.
saved_environ = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
os.environ.clear()
os.environ.update(saved_environ)

if no_setuptools and sys.version_info < (3, 12):
    subprocess.check_call([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet',
                           '--disable-pip-version-check', 'setuptools'])

# The exact pip version ansible-test asked for, from the package index.
packages = [a for a in pip_args if not a.startswith('-')]
if packages:
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet'] + pip_args)
if not no_wheel:
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet',
                           '--disable-pip-version-check', 'wheel'])
EOF
    if [[ -f "$GET_PIP" ]] && cmp -s "$tmp" "$GET_PIP"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$GET_PIP"
    fi
}
write_get_pip

# --- staging tree -------------------------------------------------------------------------------
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/iotfleet-sanity.XXXXXX")"
cleanup() { rm -rf "$STAGE"; }
trap cleanup EXIT

COLLECTION="$STAGE/ansible_collections/iotfleet/aws"
mkdir -p "$COLLECTION" "$STAGE/ansible_collections/amazon" "$STAGE/ansible_collections/community"

# Tracked files (that still exist) plus untracked files that .gitignore does not exclude.
git ls-files -z --cached --others --exclude-standard \
    | "$PYTHON" -c 'import os, sys
paths = sorted({p for p in sys.stdin.buffer.read().split(b"\0") if p and os.path.lexists(p)})
sys.stdout.buffer.write(b"".join(p + b"\0" for p in paths))' \
    | tar --create --no-recursion --null --files-from=- --file=- \
    | tar --extract --file=- --directory="$COLLECTION"

# Dependencies: symlinks are enough here (ansible-test only insists that the collection under
# test is a real directory); they are only imported, never tested.
ln -s "$SITE_COLLECTIONS/amazon/aws" "$STAGE/ansible_collections/amazon/aws"
ln -s "$SITE_COLLECTIONS/community/aws" "$STAGE/ansible_collections/community/aws"

# --- run ------------------------------------------------------------------------------------------
# All sanity tests that apply to a collection run; none needs to be skipped offline.
RESULTS="$REPO_ROOT/tests/output/sanity"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

status=0
(
    cd "$COLLECTION"
    export HOME="$SANITY_HOME"
    export PATH="$VENV/bin:$PATH"
    unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
    "$ANSIBLE_TEST" sanity --venv --python "$PY_VERSION" --color no --junit "$@"
) || status=$?

if [[ -d "$COLLECTION/tests/output" ]]; then
    for sub in junit bot data; do
        if [[ -d "$COLLECTION/tests/output/$sub" ]]; then
            cp -R "$COLLECTION/tests/output/$sub" "$RESULTS/"
        fi
    done
fi

if (( status != 0 )); then
    echo "run.sh: ansible-test sanity failed (exit $status); results in tests/output/sanity/" >&2
fi
exit "$status"
