"""The `cloudcc` command: `up`, `status`, `stop`, and the subcommands other modules add.

To add a subcommand, give your module a `register(subparsers)` that calls
`subparsers.add_parser(...)` and `parser.set_defaults(func=handler)`, where
`handler(args: argparse.Namespace) -> int` returns the exit code; then list that
`register` in `COMMANDS` below. Import heavy dependencies inside the handler, so that
every other subcommand stays quick to start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.error import HTTPError

from deploy.natsserver import NatsServerError
from deploy.runtime import Runtime, StartupError, find_instance
from deploy.settings import Settings, SettingsError

Subparsers = argparse._SubParsersAction  # argparse has no public name for this type


def register(subparsers: Subparsers) -> None:
    up = subparsers.add_parser("up", help="start NATS, the services and the web app")
    _add_data_option(up)
    up.add_argument("--host", help="address to serve HTTP on (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="port to serve HTTP on (default 8000)")
    up.add_argument(
        "--demo",
        action="store_true",
        help="seed tenant 'demo' (agents, queues, IVR, customers) and keep simulated "
        "calls, chats, emails, SMS and Facebook traffic flowing ($CLOUDCC_DEMO_SPEED "
        "speeds it up)",
    )
    up.set_defaults(func=_up)

    status = subparsers.add_parser("status", help="show the health of the running cloudcc")
    _add_data_option(status)
    status.set_defaults(func=_status)

    stop = subparsers.add_parser("stop", help="stop the running cloudcc")
    _add_data_option(stop)
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (30)")
    stop.set_defaults(func=_stop)


def _events(subparsers: Subparsers) -> None:
    from deploy import events_cli

    events_cli.register(subparsers)


def _projections(subparsers: Subparsers) -> None:
    from deploy import projections_cli

    projections_cli.register(subparsers)


def _simulate(subparsers: Subparsers) -> None:
    from deploy import simulate

    simulate.register(subparsers)


def _tenants(subparsers: Subparsers) -> None:
    from deploy import tenants_cli

    tenants_cli.register(subparsers)


COMMANDS: list[Callable[[Subparsers], None]] = [
    register,
    _events,
    _projections,
    _simulate,
    _tenants,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cloudcc", description="Cloud contact center on an event log in NATS JetStream."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMANDS:
        add_commands(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (StartupError, NatsServerError, SettingsError) as exc:
        print(f"cloudcc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C before the runtime took over SIGINT; nothing was started yet.
        return 130


def _add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data directory (default $CLOUDCC_DATA or ./var)")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    options = {
        "data_dir": args.data,
        "http_host": getattr(args, "host", None),
        "http_port": getattr(args, "port", None),
    }
    overrides.update({key: value for key, value in options.items() if value is not None})
    return Settings.from_env(**overrides)


def _up(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings(args, demo=args.demo)
    runtime = Runtime(settings)
    # With --demo, deploy.services adds the demo service, which says when it has seeded.
    _register_services(runtime)
    asyncio.run(runtime.run())
    return 0


def _register_services(runtime: Runtime) -> None:
    try:
        import deploy.services
    except ModuleNotFoundError as exc:
        # Only a missing deploy/services.py is expected; a missing import inside it is a bug.
        if exc.name != "deploy.services":
            raise
        return
    deploy.services.register_services(runtime)


def _status(args: argparse.Namespace) -> int:
    data_dir = _settings(args).data_dir
    info = find_instance(data_dir)
    if info is None:
        print(f"cloudcc is not running on {data_dir}", file=sys.stderr)
        return 1
    if not info["http_url"]:
        print(f"cloudcc is starting on {data_dir} (pid {info['pid']})", file=sys.stderr)
        return 1
    try:
        report = _get_json(f"{info['http_url']}/health")
    except OSError as exc:
        print(f"cloudcc (pid {info['pid']}) does not answer at {info['http_url']}: {exc}")
        return 1
    print(f"cloudcc (pid {info['pid']}, up since {info['started_at']}): {info['http_url']}")
    print(json.dumps(report, indent=2))
    return 0 if report.get("status") == "ok" else 2


def _get_json(url: str) -> Any:
    # The instance is local or on a private network: an http_proxy from the environment
    # must not be asked for it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return json.load(response)
    except HTTPError as exc:
        if exc.code == 503:  # degraded: the body is still the health report
            return json.load(exc)
        raise


def _stop(args: argparse.Namespace) -> int:
    data_dir = _settings(args).data_dir
    info = find_instance(data_dir)
    if info is None:
        print(f"cloudcc is not running on {data_dir}", file=sys.stderr)
        return 1
    pid = info["pid"]
    if pid is None:
        print(f"cloudcc on {data_dir} is just starting; try again", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it exited on its own between the look-up and the signal
    deadline = time.monotonic() + args.timeout
    # The lock, released only when the process has stopped everything, marks the end.
    while find_instance(data_dir) is not None:
        if time.monotonic() > deadline:
            print(f"cloudcc (pid {pid}) is still stopping after {args.timeout:g}s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"cloudcc (pid {pid}) stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
