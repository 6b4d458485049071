"""The customers read model: what agents search and open (CC8), per tenant.

A merged customer (CT11) leaves the list: its row is dropped, its identities are already
on the target's row (`Absorbed`), and `customer_merges` says where it went so that a
link to it can be followed to the survivor.

Search runs on `customer_search_terms`, an index of prefixed terms per customer, rather
than FTS5: FTS5's shadow tables hold segments whose bytes depend on how writes were
batched, so `cloudcc projections verify` could not compare a live copy with a rebuild,
while a plain WITHOUT ROWID table is the same for the same events. Every query term is
a prefix range scan on the (tenant, term) key. Terms, by their prefix:

- `n:` each word of the name, folded (lower case, accents and đ removed: "Nguyễn" is
  `n:nguyen`), so "nguyen van" finds "Nguyễn Văn An";
- `p:` a phone as domain.phones stores it (+84901234567), found by a query in any
  written form ("0901 234 567", "84901234567") normalised the same way, or its start;
- `r:` the phone's digits reversed, so the last digits of a number find it ("234567");
- `e:` an email address, lower case, found by its start;
- `i:` any other identity (Facebook id, chat visitor id), lower case, found by its start;
- `t:` each of the customer's tags, folded, found by its start ("vip" finds tag "VIP").

Tags are the customer's attribute `tags` (domain.customers attributes): its value is the
tags joined by commas (`join_tags`, `split_tags`), kept in `customer_tags` too so that a
page can show them beside a search's results.

A table made before search existed has no terms: rebuild it (`cloudcc projections
rebuild customers`).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from domain.customers import Customer
from domain.phones import InvalidPhoneNumber, normalize_phone_number
from projections.readmodel import SqliteReadModel

# msgspec over the stdlib: a rebuild encodes identities once per event.
_json = msgspec.json.Encoder()

# Above every character in UTF-8 (and so in SQLite's BINARY order): `term < prefix + _END`
# closes a prefix range.
_END = "\U0010ffff"
_WORD = re.compile(r"\w+")
# A query is a phone number when it is only digits and the separators people write.
_PHONE_QUERY = re.compile(r"\+?[0-9\s().\-/]+")
_PHONE_QUERY_DIGITS = 3
_NON_DIGIT = re.compile(r"[^0-9]")
# The last digits find a number from this many on: fewer match half the tenant.
_SUFFIX_DIGITS = 4


class CustomersReadModel(SqliteReadModel):
    """One row per live customer, keyed by tenant; identities as JSON; search terms."""

    name = "customers"
    upstreams = ("customers",)
    schema = (
        """CREATE TABLE IF NOT EXISTS customers (
            tenant_id TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            identities TEXT NOT NULL,
            version INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (tenant_id, id)
        )""",
        """CREATE TABLE IF NOT EXISTS customer_merges (
            tenant_id TEXT NOT NULL,
            id TEXT NOT NULL,
            merged_into TEXT NOT NULL,
            PRIMARY KEY (tenant_id, id)
        )""",
        # Later events name the customer by id alone (ids are unique across tenants):
        # without these every update scans the table, and a rebuild goes quadratic.
        "CREATE INDEX IF NOT EXISTS customers_by_id ON customers (id)",
        "CREATE INDEX IF NOT EXISTS customer_merges_by_id ON customer_merges (id)",
        """CREATE TABLE IF NOT EXISTS customer_search_terms (
            tenant_id TEXT NOT NULL,
            term TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            PRIMARY KEY (tenant_id, term, customer_id)
        ) WITHOUT ROWID""",
        # Re-indexing a customer deletes its terms; a query's second word is checked
        # per candidate (EXISTS by customer and term range).
        "CREATE INDEX IF NOT EXISTS customer_search_terms_by_customer "
        "ON customer_search_terms (customer_id, term)",
        """CREATE TABLE IF NOT EXISTS customer_tags (
            customer_id TEXT NOT NULL,
            tag TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (customer_id, tag)
        ) WITHOUT ROWID""",
    )

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._cursors = threading.local()

    def _cursor(self, db: sqlite3.Connection) -> sqlite3.Cursor:
        """A cursor on `db` kept for `handle`, giving plain tuples.

        `db.execute` makes a cursor per statement, and sqlite3.Row an object per row:
        reading a customer's six terms took 13.8 us that way against 8.1 us with this
        cursor (SQLite 3.40), and a rebuild runs `handle` for every event of the stream.
        """
        cursor: sqlite3.Cursor | None = getattr(self._cursors, "cursor", None)
        if cursor is None or cursor.connection is not db:
            cursor = db.cursor()
            cursor.row_factory = None
            self._cursors.cursor = cursor
        return cursor

    def handle(self, db: sqlite3.Connection, event: Any) -> None:
        # Few statements per event, each doing little: every event of the stream goes
        # through here on a rebuild.
        cur = self._cursor(db)
        cid = str(event.originator_id)
        at = event.timestamp.isoformat()
        if isinstance(event, Customer.Registered):
            cur.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.tenant_id,
                    cid,
                    event.name,
                    _json.encode([list(i) for i in event.identities]).decode(),
                    event.originator_version,
                    at,
                ),
            )
            _insert_terms(cur, event.tenant_id, cid, set(_terms(event.name, event.identities)))
            self.changed(event.tenant_id, "customer", cid)
        elif isinstance(event, Customer.Renamed):
            # Read before the update, it is the row a read after it would find (the
            # first by id), but for the name, which is the event's.
            row = cur.execute(
                "SELECT tenant_id, identities FROM customers WHERE id = ?", (cid,)
            ).fetchone()
            cur.execute(
                "UPDATE customers SET name = ?, version = ?, updated_at = ? WHERE id = ?",
                (event.name, event.originator_version, at, cid),
            )
            if row is None:
                cur.execute("DELETE FROM customer_search_terms WHERE customer_id = ?", (cid,))
            else:
                self._reindex(cur, row[0], cid, event.name, msgspec.json.decode(row[1]))
        elif isinstance(event, Customer.IdentityAdded):
            self._set_identities(cur, event, lambda ids: ids + [[event.kind, event.value]])
        elif isinstance(event, Customer.IdentityRemoved):
            self._set_identities(
                cur, event, lambda ids: [i for i in ids if i != [event.kind, event.value]]
            )
        elif isinstance(event, Customer.Absorbed):
            self._set_identities(
                cur,
                event,
                lambda ids: ids + [list(i) for i in event.identities if list(i) not in ids],
            )
        elif isinstance(event, Customer.MergedInto | Customer.Redirected):
            tenant = cur.execute("SELECT tenant_id FROM customers WHERE id = ?", (cid,)).fetchone()
            cur.execute("DELETE FROM customers WHERE id = ?", (cid,))
            cur.execute("DELETE FROM customer_search_terms WHERE customer_id = ?", (cid,))
            cur.execute("DELETE FROM customer_tags WHERE customer_id = ?", (cid,))
            if tenant is not None:
                cur.execute(
                    "INSERT INTO customer_merges VALUES (?, ?, ?)",
                    (tenant[0], cid, str(event.target_id)),
                )
                self.changed(tenant[0], "customer", cid)
            else:
                cur.execute(
                    "UPDATE customer_merges SET merged_into = ? WHERE id = ?",
                    (str(event.target_id), cid),
                )
        elif isinstance(event, Customer.AttributesChanged) and TAGS in event.changes:
            self._set_tags(cur, event, split_tags(event.changes[TAGS] or ""))
        elif isinstance(event, Customer.Event):
            # Profile changes are not shown here yet; the row still follows the version.
            cur.execute(
                "UPDATE customers SET version = ?, updated_at = ? WHERE id = ?",
                (event.originator_version, at, cid),
            )
            row = cur.execute("SELECT tenant_id FROM customers WHERE id = ?", (cid,)).fetchone()
            if row is not None:
                self.changed(row[0], "customer", cid)

    def _set_identities(
        self, cur: sqlite3.Cursor, event: Any, change: Callable[[list[Any]], list[Any]]
    ) -> None:
        cid = str(event.originator_id)
        row = cur.execute(
            "SELECT tenant_id, name, identities FROM customers WHERE id = ?", (cid,)
        ).fetchone()
        identities = change(msgspec.json.decode(row[2]))
        cur.execute(
            "UPDATE customers SET identities = ?, version = ?, updated_at = ? WHERE id = ?",
            (
                _json.encode(identities).decode(),
                event.originator_version,
                event.timestamp.isoformat(),
                cid,
            ),
        )
        # A read after the update would find the same row (the first by id), with these
        # identities: no need to read it again.
        self._reindex(cur, row[0], cid, row[1], identities)

    def _set_tags(self, cur: sqlite3.Cursor, event: Any, tags: list[str]) -> None:
        cid = str(event.originator_id)
        row = cur.execute(
            "SELECT tenant_id, name, identities FROM customers WHERE id = ?", (cid,)
        ).fetchone()
        if row is None:
            return
        cur.execute("DELETE FROM customer_tags WHERE customer_id = ?", (cid,))
        cur.executemany(
            "INSERT OR IGNORE INTO customer_tags VALUES (?, ?, ?, ?)",
            [(cid, tag, row[0], seq) for seq, tag in enumerate(tags)],
        )
        cur.execute(
            "UPDATE customers SET version = ?, updated_at = ? WHERE id = ?",
            (event.originator_version, event.timestamp.isoformat(), cid),
        )
        self._reindex(cur, row[0], cid, row[1], msgspec.json.decode(row[2]))

    def _reindex(
        self,
        cur: sqlite3.Cursor,
        tenant: str,
        cid: str,
        name: str,
        identities: Iterable[Iterable[str]],
    ) -> None:
        """Make the customer's search terms those of its row (name, identities).

        From the row, not from the event: two identities may give one term (a Facebook
        id and a chat id alike), so removing one must not drop the other's term. The
        terms held are read and only the difference is written: the same rows as
        deleting them all and inserting them again, but a rename or a new identity
        changes one or two of a customer's terms, and each write costs.
        """
        tags = [
            t for (t,) in cur.execute("SELECT tag FROM customer_tags WHERE customer_id = ?", (cid,))
        ]
        wanted = {(tenant, term) for term in _terms(name, identities, tags)}
        held = set(
            cur.execute(
                "SELECT tenant_id, term FROM customer_search_terms WHERE customer_id = ?", (cid,)
            )
        )
        gone = held - wanted
        if gone:
            cur.executemany(
                "DELETE FROM customer_search_terms "
                "WHERE tenant_id = ? AND term = ? AND customer_id = ?",
                [(t, term, cid) for t, term in gone],
            )
        _insert_terms(cur, tenant, cid, {term for _, term in wanted - held})
        self.changed(tenant, "customer", cid)

    def search(self, tenant_id: str, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Live customers of the tenant whose name, phone, email or other identity
        matches `text`, by name (see the module docstring for what matches what)."""
        words, prefixes = _query(text)
        hits: list[str] = []
        params: list[Any] = []
        if words:
            # The longest word drives the scan: it is likely the most selective.
            first, *rest = sorted(words, key=lambda w: (-len(w), w))
            also = (
                " AND EXISTS (SELECT 1 FROM customer_search_terms t "
                "WHERE t.customer_id = t0.customer_id AND t.term >= ? AND t.term < ?)"
            )
            hits.append(
                "SELECT t0.customer_id FROM customer_search_terms t0 "
                "WHERE t0.tenant_id = ? AND t0.term >= ? AND t0.term < ?" + also * len(rest)
            )
            params += [tenant_id, *_range("n:" + first)]
            for word in rest:
                params += _range("n:" + word)
        for prefix in prefixes:
            hits.append(
                "SELECT customer_id FROM customer_search_terms "
                "WHERE tenant_id = ? AND term >= ? AND term < ?"
            )
            params += [tenant_id, *_range(prefix)]
        if not hits:
            return []
        rows = self.connect().execute(
            f"WITH hits(customer_id) AS ({' UNION '.join(hits)}) "
            "SELECT c.* FROM hits JOIN customers c ON c.id = hits.customer_id "
            "WHERE c.tenant_id = ? ORDER BY c.name, c.id LIMIT ?",
            (*params, tenant_id, limit),
        )
        return [_customer(r) for r in rows]

    def tags(self, tenant_id: str, customer_ids: Iterable[str]) -> dict[str, list[str]]:
        """The tags of each of these customers of the tenant (none: not in the result)."""
        ids = list(customer_ids)
        if not ids:
            return {}
        found: dict[str, list[str]] = {}
        rows = self.connect().execute(
            f"SELECT customer_id, tag FROM customer_tags WHERE tenant_id = ? "
            f"AND customer_id IN ({', '.join('?' * len(ids))}) ORDER BY customer_id, seq",
            (tenant_id, *ids),
        )
        for customer_id, tag in rows:
            found.setdefault(customer_id, []).append(tag)
        return found

    def merged_into(self, tenant_id: str, customer_id: str) -> str | None:
        """The survivor a merged customer's id leads to, or None if it was not merged."""
        row = (
            self.connect()
            .execute(
                "SELECT merged_into FROM customer_merges WHERE tenant_id = ? AND id = ?",
                (tenant_id, customer_id),
            )
            .fetchone()
        )
        return row[0] if row else None

    def get(self, tenant_id: str, customer_id: str) -> dict[str, Any] | None:
        row = (
            self.connect()
            .execute(
                "SELECT * FROM customers WHERE tenant_id = ? AND id = ?", (tenant_id, customer_id)
            )
            .fetchone()
        )
        return _customer(row) if row else None

    def list(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.connect().execute(
            "SELECT * FROM customers WHERE tenant_id = ? ORDER BY name LIMIT ?", (tenant_id, limit)
        )
        return [_customer(r) for r in rows]


def _insert_terms(cur: sqlite3.Cursor, tenant: str, cid: str, terms: set[str]) -> None:
    if terms:
        cur.executemany(
            "INSERT INTO customer_search_terms VALUES (?, ?, ?)",
            [(tenant, term, cid) for term in terms],
        )


class _StripMarks(dict[int, int | None]):
    """A str.translate table that drops combining marks, filled as characters are met."""

    def __missing__(self, code: int) -> int | None:
        kept = None if unicodedata.combining(chr(code)) else code
        self[code] = kept
        return kept


_STRIP_MARKS = _StripMarks()


def fold(text: str) -> str:
    """Lower case without accents: what names are indexed and searched as.

    đ is a letter of its own in Unicode, not d with a mark, so it is mapped by hand.
    """
    decomposed = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    if decomposed.isascii():
        return decomposed.casefold()  # no marks to drop
    return decomposed.translate(_STRIP_MARKS).casefold()


@functools.lru_cache(maxsize=4096)
def _name_terms(name: str) -> tuple[str, ...]:
    # Cached: a customer's name is indexed again with each change of its identities.
    return tuple("n:" + word for word in _WORD.findall(fold(name)))


def _terms(
    name: str, identities: Iterable[Iterable[str]], tags: Iterable[str] = ()
) -> Iterator[str]:
    yield from _name_terms(name)
    for tag in tags:
        yield "t:" + fold(tag)
    for kind, value in identities:
        if kind == "phone":
            yield "p:" + value
            if value.isascii():
                # In ASCII, isdigit() is true of 0-9 only; the regex runs in C.
                digits = _NON_DIGIT.sub("", value)
            else:
                digits = "".join(c for c in value if c.isdigit())
            yield "r:" + digits[::-1]
        elif kind == "email":
            yield "e:" + value.lower()
        else:
            yield "i:" + value.lower()


def _query(text: str) -> tuple[list[str], set[str]]:
    """(name words that must all match, term prefixes of which any may match)."""
    text = text.strip()
    if not text:
        return [], set()
    digits = "".join(c for c in text if c.isdigit())
    if _PHONE_QUERY.fullmatch(text) and len(digits) >= _PHONE_QUERY_DIGITS:
        prefixes = {"i:" + digits}  # Facebook ids are numbers too
        try:
            prefixes.add("p:" + normalize_phone_number(text))
        except InvalidPhoneNumber:
            pass
        if not digits.startswith("0") and not text.startswith("+"):
            # The start of a number written with its country code but no plus ("8490"),
            # too short for normalisation to recognise.
            prefixes.add("p:+" + digits)
        if len(digits) >= _SUFFIX_DIGITS:
            prefixes.add("r:" + digits[::-1])
        return [], prefixes
    prefixes = {"t:" + fold(text)}
    if not any(c.isspace() for c in text):
        prefixes |= {"e:" + text.lower(), "i:" + text.lower()}
    return _WORD.findall(fold(text)), prefixes


TAGS = "tags"  # the customer attribute that holds their tags
MAX_TAG = 50
MAX_TAGS = 20


def split_tags(value: str) -> list[str]:
    """The tags of a `tags` attribute (or of what a person typed): split at commas,
    spaces squeezed, blanks and repeats (ignoring case) dropped, in the order given."""
    seen: dict[str, str] = {}
    for part in value.split(","):
        tag = " ".join(part.split())
        if tag and tag.casefold() not in seen:
            seen[tag.casefold()] = tag
    return list(seen.values())


def join_tags(tags: Iterable[str]) -> str | None:
    """The `tags` attribute's value for these tags; None (remove it) for none."""
    return ", ".join(tags) or None


def _range(prefix: str) -> tuple[str, str]:
    return prefix, prefix + _END


def _customer(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "name": row["name"],
        "identities": msgspec.json.decode(row["identities"]),
        "version": row["version"],
        "updated_at": row["updated_at"],
    }
