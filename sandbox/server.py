"""The server process: moto in server mode with our extension applied.

Started by `python -m sandbox up`; runs in the foreground here so that the launcher owns
detaching, the pid file and the log.
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from sandbox.settings import CA_DIR_ENV
from sandbox.settings import HEALTH_PATH
from sandbox.settings import HOST


def with_health(app, info: dict):
    """Answer HEALTH_PATH ourselves, so `up` and `status` know it is this server, patched, answering."""
    body = json.dumps(info).encode()

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return wsgi


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.server")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--appsync-port", type=int, help="the AppSync simulator's port (default: port + 1)")
    parser.add_argument("--hosting-port", type=int, default=0, help="Amplify hosting stand-in's port (0: none)")
    args = parser.parse_args(argv)
    ca_dir = os.environ.get(CA_DIR_ENV)
    if not ca_dir:
        raise SystemExit(f"{CA_DIR_ENV} must name the CA directory")
    # moto builds some URLs (e.g. SQS queue URLs) from MOTO_PORT; read when moto is imported.
    os.environ.setdefault("MOTO_PORT", str(args.port))

    import moto
    from moto.core.config import default_user_config
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from moto.moto_server.werkzeug_app import create_backend_app
    from werkzeug.serving import run_simple

    from sandbox import ext_amplify
    from sandbox import moto_ext
    from sandbox import throttle

    if moto.__version__ != moto_ext.MOTO_VERSION:
        raise SystemExit(f"the sandbox extension is written for moto {moto_ext.MOTO_VERSION}, found {moto.__version__}")
    endpoint = f"http://{args.host}:{args.port}"
    appsync_url = f"http://{args.host}:{args.appsync_port or args.port + 1}/graphql"
    moto_ext.apply(Path(ca_dir), endpoint=endpoint, appsync_url=appsync_url)
    # Certificate ids as AWS computes them: SHA-256 of the DER certificate, not of the PEM text.
    default_user_config["iot"]["use_valid_cert"] = True
    # SIGTERM from `down` ends serve_forever cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    # The sandbox's own endpoints (AppSync simulator config, Amplify zip upload) in front of moto.
    app = moto_ext.routes(DomainDispatcherApplication(create_backend_app))
    # Opt-in: ThrottlingException above AWS IoT's default API rates (sandbox/throttle.py).
    app = throttle.one_iot_request_at_a_time(app)
    throttling = throttle.from_env()
    if throttling is not None:
        app = throttling.wrap(app)
    latency = throttle.latency_from_env()
    if latency:
        app = throttle.delayed(app, latency)
    hosting = None
    if args.hosting_port:
        # The Amplify hosting stand-in: the latest successful deployment at http://host:hosting_port/.
        # A taken port (another sandbox's default) leaves hosting out; the rest of the sandbox works.
        try:
            ext_amplify.serve_hosting(args.host, args.hosting_port)
            hosting = f"http://{args.host}:{args.hosting_port}/"
        except OSError as e:
            print(f"Amplify hosting not served: port {args.hosting_port}: {e}", file=sys.stderr, flush=True)
    info = {"status": "ok", "pid": os.getpid(), "moto": moto.__version__, "ca": str(Path(ca_dir) / "ca.pem")}
    info.update(hosting=hosting)
    info.update(throttle=throttling.mode if throttling is not None else None, iot_latency_ms=latency * 1000)
    run_simple(args.host, args.port, with_health(app, info), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
