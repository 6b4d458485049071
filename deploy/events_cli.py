"""`cloudcc events show|skip`: what an operator does when a reader stops at a bad message.

A message that does not decode stops every reader at its sequence (see eventstore's
docstring). `show` prints it; `skip` records, append-only, that readers may pass it.
Both find NATS through `NATS_URL`, or through the instance running on `$CLOUDCC_DATA`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from deploy.runtime import find_instance
from deploy.settings import Settings


def register(subparsers: Any) -> None:
    events = subparsers.add_parser("events", help="inspect the event store; skip a bad message")
    commands = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    show = commands.add_parser("show", help="print one stored message of an application")
    skip = commands.add_parser("skip", help="let readers pass an undecodable message")
    for parser in (show, skip):
        parser.add_argument("--data", help="data directory (default $CLOUDCC_DATA or ./var)")
        parser.add_argument("app", help="application name, e.g. customers")
        parser.add_argument("seq", type=int, help="stream sequence (notification id)")
    skip.add_argument("--reason", required=True, help="why it is safe to pass it (kept)")
    skip.add_argument("--by", default="", help="who decided (kept)")
    show.set_defaults(func=_show)
    skip.set_defaults(func=_skip)


def _nats_url(args: argparse.Namespace) -> str | None:
    settings = Settings.from_env(**({"data_dir": args.data} if args.data else {}))
    if settings.nats_url:
        return settings.nats_url
    info = find_instance(settings.data_dir)
    return info["nats_url"] if info else None


@contextlib.contextmanager
def _message(args: argparse.Namespace) -> Iterator[tuple[Any, Any, str | None] | None]:
    """(store, stored message, why it does not decode or None), or None when absent."""
    from eventstore import connection
    from eventstore.codec import UndecodableEventError, decode_envelope
    from eventstore.layout import StreamLayout
    from eventstore.store import JetStreamStore

    url = _nats_url(args)
    if url is None:
        print("cloudcc: no NATS_URL and no cloudcc running on the data directory", file=sys.stderr)
        yield None
        return
    store = JetStreamStore(connection.NatsConnection(url), StreamLayout(args.app))
    try:
        stored = store.conn.run(store.get_seq(args.seq))
        if stored is None:
            print(f"{store.layout.stream} has no message {args.seq}", file=sys.stderr)
            yield None
            return
        try:
            decode_envelope(store.layout, stored.seq, stored.subject, stored.data)
        except UndecodableEventError as error:
            yield store, stored, error.reason
        else:
            yield store, stored, None
    finally:
        store.conn.close()


def _show(args: argparse.Namespace) -> int:
    with _message(args) as found:
        if found is None:
            return 1
        store, stored, problem = found
        print(f"stream:  {store.layout.stream}\nseq:     {stored.seq}\nsubject: {stored.subject}")
        print(f"bytes:   {len(stored.data)}\nhead:    {stored.data[:120]!r}")
        if problem is None:
            from eventstore.codec import notification_from_message

            n = notification_from_message(store.layout, stored.seq, stored.subject, stored.data)
            print(f"decodes: yes — {n.topic} v{n.originator_version} of {n.originator_id}")
        else:
            skipped = store.conn.run(store.skips()).get(stored.seq)
            print(f"decodes: NO — {problem}")
            print(f"skipped: {'yes: ' + skipped.reason if skipped else 'no'}")
        return 0


def _skip(args: argparse.Namespace) -> int:
    with _message(args) as found:
        if found is None:
            return 1
        store, stored, problem = found
        if problem is None:
            print(f"message {args.seq} decodes; readers do not stop there", file=sys.stderr)
            return 1
        store.conn.run(store.skip(args.seq, args.reason, args.by))
        print(f"recorded: readers of {store.layout.stream} pass message {args.seq}")
        print("restart the readers (cloudcc stop; cloudcc up) to resume at once")
        return 0
