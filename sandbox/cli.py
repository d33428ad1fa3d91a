"""`python -m sandbox up|down|status|summary|env` (run from the repository root)."""

import argparse

from sandbox import control
from sandbox.settings import DEFAULT_PORT
from sandbox.settings import PORT_ENV
from sandbox.settings import STATE_DIR_ENV
from sandbox.settings import Settings
from sandbox.settings import load_settings


def env(settings: Settings) -> int:
    print(f"export AWS_ENDPOINT_URL={settings.endpoint}")
    print("export AWS_ACCESS_KEY_ID=testing")
    print("export AWS_SECRET_ACCESS_KEY=testing")
    print(f"export AWS_DEFAULT_REGION={settings.region}")
    return 0


def summary_if_running(settings: Settings) -> int:
    if control.running_pid(settings) is None:
        print(f"sandbox not running ({settings.endpoint})")
        return 3
    from sandbox.summary import summary  # boto3 is slow to import; only this command needs it

    return summary(settings)


COMMANDS = {
    "up": (control.up, "start the sandbox in the background (no-op if it already runs)"),
    "down": (control.down, "stop the sandbox (its AWS state is in memory and is lost)"),
    "status": (control.status, "say whether it runs and print the endpoint URL; exit 3 if not running"),
    "summary": (summary_if_running, "list IoT things, groups, policies, rules, certificates, tables and functions"),
    "env": (env, "print export lines for the aws CLI and boto3"),
}


def main(argv=None) -> int:
    # The options are accepted before or after the command; SUPPRESS keeps a later default from
    # overwriting an earlier value.
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--state-dir", default=argparse.SUPPRESS, help=f"state directory (env {STATE_DIR_ENV}; default <repo>/.sandbox)"
    )
    options.add_argument(
        "--port",
        type=int,
        default=argparse.SUPPRESS,
        help=f"port (env {PORT_ENV}; default from the local inventory, else {DEFAULT_PORT})",
    )
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__, parents=[options])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_handler, text) in COMMANDS.items():
        commands.add_parser(name, help=text, description=text, parents=[options])
    args = parser.parse_args(argv)
    settings = load_settings(state_dir=getattr(args, "state_dir", None), port=getattr(args, "port", None))
    return COMMANDS[args.command][0](settings)
