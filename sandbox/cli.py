"""`python -m sandbox up|down|status|summary|env` (run from the repository root)."""

import argparse
import os

from sandbox import control
from sandbox.settings import DEFAULT_PORT
from sandbox.settings import PORT_ENV
from sandbox.settings import STATE_DIR_ENV
from sandbox.settings import Settings
from sandbox.settings import load_settings
from sandbox.throttle import THROTTLE_ENV


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


def devices_command(settings: Settings, action: str) -> int:
    """`devices up|down|status`: the virtual devices running the flashed firmware (sandbox/devices.py)."""
    from sandbox import devices  # littlefs and the firmware load only for this command

    if action == "up":
        return devices.up(settings)
    if action == "down":
        devices.down(settings)
        return 0
    line = devices.status_line(settings)
    print(line)
    return 0 if line.startswith("devices running") else 3


COMMANDS = {
    "up": (control.up, "start the sandbox in the background (no-op if it already runs)"),
    "down": (control.down, "stop the sandbox (its AWS state is in memory and is lost)"),
    "status": (control.status, "say whether it runs and print the endpoint URL; exit 3 if not running"),
    "summary": (summary_if_running, "list IoT things, groups, policies, rules, certificates, tables and functions"),
    "env": (env, "print export lines for the aws CLI and boto3"),
    "devices": (devices_command, "run (up), stop (down) or show (status) the virtual devices of the flashed boards"),
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
        command = commands.add_parser(name, help=text, description=text, parents=[options])
        if name == "up":
            command.add_argument(
                "--throttle",
                action="store_true",
                help=f"answer ThrottlingException above AWS IoT's default API rates (env {THROTTLE_ENV}=aws)",
            )
        if name == "devices":
            command.add_argument("action", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    if getattr(args, "throttle", False):
        os.environ[THROTTLE_ENV] = "aws"  # the server process inherits the environment
    settings = load_settings(state_dir=getattr(args, "state_dir", None), port=getattr(args, "port", None))
    if args.command == "devices":
        return devices_command(settings, args.action)
    status = COMMANDS[args.command][0](settings)
    if status == 0 and getattr(args, "throttle", False) and (control.health(settings) or {}).get("throttle") != "aws":
        print("the sandbox that runs there does not throttle; `down` it and run `up --throttle` again")
        return 1
    return status
