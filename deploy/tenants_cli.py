"""`cloudcc tenant register`, `cloudcc apikey issue|list|revoke` and `cloudcc user
add|password`: what an operator does to open the API (OP2; web.api.auth) and the web
pages (OP4; web.pages.auth) to a business.

`issue` prints the key once — only the SHA-256 of its secret is kept, so a lost key is
revoked and issued again, never shown again. The commands find NATS through `NATS_URL`,
or through the instance running on `$CLOUDCC_DATA`, as `cloudcc events` does.

`user password` reads the password from the terminal (not echoed, asked twice) or, when
stdin is not a terminal, from its first line — never from the command line, where `ps`
and the shell's history would show it. A user is found by login in the agents' event
stream itself (the users' `Created` events of the tenant), not in a read model: the
command works against any instance's NATS, wherever its read models are.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any
from uuid import UUID

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
    user = subparsers.add_parser("user", help="add a user who signs in, or set a password")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_commands.add_parser("add", help="add a user to a tenant (operators: tenant _)")
    password = user_commands.add_parser(
        "password", help="set a user's password (read from stdin, never an argument)"
    )
    for parser in (add, password):
        parser.add_argument("--data", help="data directory (default $CLOUDCC_DATA or ./var)")
        parser.add_argument("tenant", help="the tenant's id (slug), or _ for the operator")
        parser.add_argument("login", help="the user's login (an email or a user name)")
    add.add_argument("--name", required=True, help="the user's full name")
    add.add_argument("--role", required=True, help="operator, tenant_admin, supervisor or agent")
    add.add_argument("--extension", help="an extension of 2 to 6 digits")
    add.set_defaults(func=_add_user)
    password.set_defaults(func=_set_password)


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


def _add_user(args: argparse.Namespace) -> int:
    def act(apps: Any) -> None:
        from domain.agents import OPERATOR_SPACE, InvalidUser
        from domain.vocabulary import Package

        if find_user(apps, args.tenant, args.login) is not None:
            raise InvalidUser(f"{args.tenant} already has a user {args.login.strip().lower()!r}")
        # The operator's space is no tenant and has no package; its users take no calls.
        package = (
            Package.CONTACT_CENTER
            if args.tenant == OPERATOR_SPACE
            else apps.tenants.get(args.tenant)["package"]
        )
        print(
            apps.agents.create_user(
                args.tenant,
                args.name,
                args.login,
                args.role,
                package=package,
                extension=args.extension,
            )
        )

    return _with_domain(args, act)


def _set_password(args: argparse.Namespace) -> int:
    def act(apps: Any) -> None:
        from domain.base import NotFound
        from domain.passwords import WeakPassword, check_password

        user_id = find_user(apps, args.tenant, args.login)
        if user_id is None:
            raise NotFound(f"{args.tenant} has no user {args.login!r}")
        password = _read_password()
        if password is None:
            raise WeakPassword("the two passwords differ")
        check_password(password)
        apps.agents.set_password(args.tenant, user_id, password)
        print(f"password set for {args.login} of {args.tenant}")

    return _with_domain(args, act)


def _read_password() -> str | None:
    """The new password, from the terminal (twice; None if they differ) or stdin's line."""
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        return first if getpass.getpass("Again: ") == first else None
    return sys.stdin.readline().rstrip("\r\n")


def find_user(apps: Any, tenant_id: str, login: str) -> UUID | None:
    """The id of the tenant's user with this login (the latest, should there be two),
    from the users' `Created` events of the agents' stream."""
    from eventsourcing.utils import get_topic

    from domain.agents import User

    wanted = login.strip().lower()
    recorder: Any = apps.agents.recorder
    topic = get_topic(User.Created)
    found: UUID | None = None
    start = 1
    while True:
        page = recorder.select_notifications(start, 500, topics=[topic])
        for notification in page:
            created = apps.agents.mapper.to_domain_event(notification)
            if created.tenant_id == tenant_id and created.login == wanted:
                found = created.originator_id
        if len(page) < 500:
            return found
        start = page[-1].id + 1


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
