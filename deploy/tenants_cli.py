"""`cloudcc tenant register` and `cloudcc apikey issue|list|revoke`: what an operator
does to open the API to a business (OP2; web.api.auth).

`issue` prints the key once — only the SHA-256 of its secret is kept, so a lost key is
revoked and issued again, never shown again. The commands find NATS through `NATS_URL`,
or through the instance running on `$CLOUDCC_DATA`, as `cloudcc events` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from deploy.events_cli import _nats_url


def register(subparsers: Any) -> None:
    tenant = subparsers.add_parser("tenant", help="register a tenant (a business)")
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    new = tenant_commands.add_parser("register", help="register a tenant with its hotlines")
    new.add_argument("--data", help="data directory (default $CLOUDCC_DATA or ./var)")
    new.add_argument("tenant", help="the tenant's id (slug): letters, digits, - and _")
    new.add_argument("--name", required=True, help="the business's name")
    new.add_argument(
        "--package", default="contact_center", help="basic, call_center or contact_center"
    )
    new.add_argument(
        "--hotline", action="append", required=True, help="a hotline (repeat for more)"
    )
    new.set_defaults(func=_register)
    apikey = subparsers.add_parser("apikey", help="issue, list or revoke a tenant's API keys")
    commands = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    issue = commands.add_parser("issue", help="issue a key and print it (once)")
    listing = commands.add_parser("list", help="list a tenant's keys (ids and names)")
    revoke = commands.add_parser("revoke", help="revoke a key: it opens nothing from now on")
    for parser in (issue, listing, revoke):
        parser.add_argument("--data", help="data directory (default $CLOUDCC_DATA or ./var)")
        parser.add_argument("tenant", help="the tenant's id (slug)")
    issue.add_argument("--name", default="api", help="what the key is for (kept)")
    revoke.add_argument("key_id", help="the key's id (the part after `cc.`)")
    issue.set_defaults(func=_run)
    listing.set_defaults(func=_run)
    revoke.set_defaults(func=_run)


def _register(args: argparse.Namespace) -> int:
    return _with_domain(
        args,
        lambda apps: print(
            apps.tenants.register(args.tenant, args.name, args.package, args.hotline)
        ),
    )


def _run(args: argparse.Namespace) -> int:
    def act(apps: Any) -> None:
        if args.apikey_command == "issue":
            print(apps.tenants.issue_api_key(args.tenant, args.name))
        elif args.apikey_command == "revoke":
            apps.tenants.revoke_api_key(args.tenant, args.key_id)
            print(f"revoked {args.key_id}")
        else:
            print(json.dumps(apps.tenants.get(args.tenant)["api_keys"], indent=2))

    return _with_domain(args, act)


def _with_domain(args: argparse.Namespace, act: Callable[[Any], None]) -> int:
    """Run `act` on the domain applications of the instance's event store; a domain
    refusal is a message and exit code 1, no instance found is exit code 2."""
    from domain.apps import DomainApps
    from domain.base import DomainError

    url = _nats_url(args)
    if url is None:
        print("cloudcc: no NATS_URL and no cloudcc running on the data directory", file=sys.stderr)
        return 2
    apps = DomainApps.build({"PERSISTENCE_MODULE": "eventstore", "NATS_URL": url})
    try:
        act(apps)
    except DomainError as error:
        print(f"cloudcc: {error}", file=sys.stderr)
        return 1
    finally:
        apps.close()
    return 0
