#!/usr/bin/env bash
# Runs every Molecule scenario under extensions/molecule against a private sandbox.
set -euo pipefail
cd "$(dirname "$0")/../.."
state_dir=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap '.venv/bin/python -m sandbox down --state-dir "$state_dir" --port "$port" >/dev/null; rm -rf "$state_dir"' EXIT
.venv/bin/python -m sandbox up --state-dir "$state_dir" --port "$port"
export IOTFLEET_TEST_ENDPOINT="http://127.0.0.1:$port"
export PATH="$PWD/.venv/bin:$PATH"
# Keep Molecule's and Ansible's own files inside tests/output.
export ANSIBLE_HOME="$PWD/tests/output/ansible-home" MOLECULE_EPHEMERAL_DIRECTORY="$PWD/tests/output/molecule"
for scenario in extensions/molecule/*/molecule.yml; do
    molecule test -s "$(basename "$(dirname "$scenario")")"
done
