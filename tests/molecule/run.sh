#!/usr/bin/env bash
# Runs every Molecule scenario under extensions/molecule against a private sandbox.
set -euo pipefail
cd "$(dirname "$0")/../.."
state_dir=$(mktemp -d)
# Two free ports chosen together: the sandbox's and its GraphQL simulator's (port + 1 may be taken).
read -r port appsync_port < <(.venv/bin/python -c '
import socket
socks = [socket.socket() for _index in range(2)]
for sock in socks:
    sock.bind(("127.0.0.1", 0))
print(*[sock.getsockname()[1] for sock in socks])')
export IOTFLEET_SANDBOX_APPSYNC_PORT="$appsync_port"
trap '.venv/bin/python -m sandbox down --state-dir "$state_dir" --port "$port" >/dev/null; rm -rf "$state_dir"' EXIT
.venv/bin/python -m sandbox up --state-dir "$state_dir" --port "$port"
export IOTFLEET_TEST_ENDPOINT="http://127.0.0.1:$port"
export PATH="$PWD/.venv/bin:$PATH"
# Keep Molecule's and Ansible's own files inside tests/output.
export ANSIBLE_HOME="$PWD/tests/output/ansible-home" MOLECULE_EPHEMERAL_DIRECTORY="$PWD/tests/output/molecule"
for scenario in extensions/molecule/*/molecule.yml; do
    molecule test -s "$(basename "$(dirname "$scenario")")"
done
