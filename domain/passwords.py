"""Passwords (OP4): kept only as scrypt hashes, checked in constant time.

scrypt because it is a memory-hard key-derivation function in the standard library
(hashlib, over OpenSSL): no dependency, and a stolen hash costs an attacker memory as well
as time per guess. The parameters are the ones OWASP's password storage cheat sheet gives
for scrypt (N=2^15, r=8, p=1); they travel with each hash, so raising them later leaves
older hashes readable.

A stored value is `scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from domain.base import DomainError

SCHEME = "scrypt"
N, R, P = 2**15, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
MIN_LENGTH, MAX_LENGTH = 10, 200
# scrypt needs 128·N·r·p bytes (32 MiB here); OpenSSL's default ceiling is exactly that,
# and it refuses at the ceiling. The bound also caps what a forged hash may ask for.
MAX_MEMORY = 64 * 1024 * 1024
# A stored value naming a cost above this is not one of ours: refused, not computed.
MAX_N = 2**20


class WeakPassword(DomainError):
    """A password the rules refuse."""


def check_password(password: str) -> None:
    """The rules: 10 to 200 characters. Length is what makes a password strong; the upper
    bound keeps one sign-in from hashing megabytes."""
    if not isinstance(password, str):
        raise WeakPassword("a password is text")
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")
    if not password.strip():
        raise WeakPassword("a password is more than spaces")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY, dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """The value to keep for `password` (after the rules), with a fresh random salt."""
    check_password(password)
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, salt, N, R, P)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(key)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = (int(v) for v in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    if not (1 < n <= MAX_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16):
        return None
    if 128 * n * r * p >= MAX_MEMORY or len(salt) < SALT_BYTES or len(key) != KEY_BYTES:
        return None
    return n, r, p, salt, key


def is_password_hash(value: str) -> bool:
    """Whether `value` has the shape `hash_password` gives (so never a plain password)."""
    return _parse(value) is not None


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from; False for a malformed value."""
    parsed = _parse(stored)
    if parsed is None or not isinstance(password, str) or len(password) > MAX_LENGTH:
        return False
    n, r, p, salt, key = parsed
    return hmac.compare_digest(_derive(password, salt, n, r, p), key)
