"""Passwords are kept as scrypt hashes (domain.passwords) and checked in constant time."""

from __future__ import annotations

import pytest

from domain.passwords import (
    MAX_LENGTH,
    WeakPassword,
    hash_password,
    is_password_hash,
    verify_password,
)


def test_a_hash_verifies_its_password_and_no_other() -> None:
    stored = hash_password("mật khẩu đủ dài")
    assert stored.startswith("scrypt$32768$8$1$") and "mật khẩu" not in stored
    assert is_password_hash(stored)
    assert verify_password("mật khẩu đủ dài", stored)
    assert not verify_password("mật khẩu đủ dàI", stored)
    assert not verify_password("", stored)


def test_each_hash_has_its_own_salt() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password("correct horse", first) and verify_password("correct horse", second)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "correct horse",  # a plain password is not a hash
        "scrypt$32768$8$1$c2FsdA==",  # a part missing
        "bcrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,
        "scrypt$x$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,
        "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,  # not a power of two
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,  # a cost we refuse
        "scrypt$32768$8$1$not base64!$" + "A" * 44,
        "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$QUJD",  # a key of the wrong length
    ],
)
def test_a_malformed_stored_value_verifies_nothing(stored: str) -> None:
    assert not is_password_hash(stored)
    assert not verify_password("correct horse", stored)


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("short", "at least 10"),
        ("123456789", "at least 10"),
        (" " * 12, "more than spaces"),
        ("x" * (MAX_LENGTH + 1), "at most 200"),
    ],
)
def test_weak_passwords_are_refused_with_the_rule(password: str, says: str) -> None:
    with pytest.raises(WeakPassword, match=says):
        hash_password(password)


def test_the_longest_allowed_password_is_taken() -> None:
    longest = "x" * MAX_LENGTH
    assert verify_password(longest, hash_password(longest))
    assert not verify_password(longest + "x", hash_password(longest))
