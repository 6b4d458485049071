"""Sign-in throttling (web.pages.auth.Throttle, SignInThrottle) on a fake clock: per
account after 5 failures in 15 minutes, per address after 30, refusals that double from
1 minute up to 15, a success that clears the account, and a bounded memory."""

from __future__ import annotations

import pytest

from web.pages.auth import (
    ACCOUNT_FAILURES,
    ADDRESS_FAILURES,
    FIRST_REFUSAL,
    LONGEST_REFUSAL,
    THROTTLE_MAX_KEYS,
    THROTTLE_WINDOW,
    SignInThrottle,
    Throttle,
    account_key,
)

AN = ("hanoi", "an@hanoi.vn")
HOME = "203.0.113.7"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(throttle: SignInThrottle, account: object = AN, address: str = HOME) -> float:
    """One wrong password, if the throttle lets it be tried: 0, else the wait."""
    wait = throttle.begin(account, address)
    if wait == 0:
        throttle.end(account, address, ok=False)
    return wait


def succeed(throttle: SignInThrottle, account: object = AN, address: str = HOME) -> float:
    wait = throttle.begin(account, address)
    if wait == 0:
        throttle.end(account, address, ok=True)
    return wait


def test_the_constants_are_the_ones_documented() -> None:
    assert (ACCOUNT_FAILURES, ADDRESS_FAILURES) == (5, 30)
    assert (FIRST_REFUSAL, LONGEST_REFUSAL, THROTTLE_WINDOW) == (60, 15 * 60, 15 * 60)
    assert THROTTLE_MAX_KEYS == 10_000


def test_an_account_is_refused_after_five_failures_even_with_the_right_password(
    clock: Clock,
) -> None:
    throttle = SignInThrottle(clock)
    for _ in range(5):
        clock.advance(10)
        assert fail(throttle) == 0
    assert succeed(throttle) == pytest.approx(60)  # refused before the password is looked at
    clock.advance(59)
    assert fail(throttle) == pytest.approx(1)
    # Another account, from the same address, is not concerned.
    assert succeed(throttle, ("hanoi", "mai@hanoi.vn")) == 0
    clock.advance(1)
    assert succeed(throttle) == 0


def test_each_further_failure_doubles_the_refusal_up_to_fifteen_minutes(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for _ in range(5):
        fail(throttle)
    refusals = []
    for _ in range(6):
        wait = throttle.begin(AN, HOME)
        refusals.append(round(wait))
        clock.advance(wait)
        assert fail(throttle) == 0  # one more guess once the refusal is over
    refusals.append(round(throttle.begin(AN, HOME)))
    assert refusals == [60, 120, 240, 480, 900, 900, 900]


def test_an_account_quiet_for_fifteen_minutes_after_its_refusal_is_forgiven(
    clock: Clock,
) -> None:
    throttle = SignInThrottle(clock)
    for _ in range(5):
        fail(throttle)
    clock.advance(60 + THROTTLE_WINDOW)
    for _ in range(4):
        assert fail(throttle) == 0
    assert fail(throttle) == 0  # the fifth failure refuses again, for 1 minute
    assert round(throttle.begin(AN, HOME)) == 60


def test_failures_older_than_fifteen_minutes_do_not_count(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for _ in range(4):
        fail(throttle)
    clock.advance(THROTTLE_WINDOW)
    for _ in range(4):
        assert fail(throttle) == 0
    assert succeed(throttle) == 0


def test_a_successful_sign_in_clears_the_accounts_failures(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for _ in range(4):
        fail(throttle)
    assert succeed(throttle) == 0
    for _ in range(4):
        assert fail(throttle) == 0
    assert succeed(throttle) == 0


def test_logins_differing_in_case_or_spaces_are_one_account() -> None:
    assert account_key(" hanoi ", " An@Hanoi.VN ") == account_key("hanoi", "an@hanoi.vn")
    assert account_key("HANOI", "an@hanoi.vn") != account_key("hanoi", "an@hanoi.vn")


def test_an_address_is_refused_after_thirty_failures_across_accounts(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for n in range(30):
        assert fail(throttle, ("hanoi", f"guess{n}")) == 0
    assert round(throttle.begin(("hanoi", "another"), HOME)) == 60
    assert succeed(throttle, AN, HOME) > 0  # even a right password, from there
    assert succeed(throttle, AN, "198.51.100.1") == 0  # from elsewhere, it goes ahead


def test_an_addresss_successes_do_not_count_and_do_not_clear_it(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for n in range(100):
        assert succeed(throttle, ("hanoi", f"agent{n}")) == 0  # a whole office behind one NAT
    for n in range(29):
        assert fail(throttle, ("hanoi", f"guess{n}")) == 0
    assert succeed(throttle) == 0  # does not forgive the address's failures
    assert fail(throttle, ("hanoi", "guess29")) == 0
    assert throttle.begin(("hanoi", "more"), HOME) > 0


def test_attempts_in_flight_count_until_they_succeed(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for _ in range(5):  # five guesses at once, none scored yet
        assert throttle.begin(AN, HOME) == 0
    assert throttle.begin(AN, HOME) > 0  # a sixth must wait for them
    throttle.end(AN, HOME, ok=True)  # one was right: the account is cleared
    for _ in range(4):
        throttle.end(AN, HOME, ok=False)
    assert throttle.begin(AN, HOME) == 0


def test_once_refused_an_account_gets_one_guess_at_a_time(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for _ in range(5):
        fail(throttle)
    clock.advance(60)
    assert throttle.begin(AN, HOME) == 0
    assert throttle.begin(AN, HOME) > 0


def test_keys_expire_and_their_number_is_capped(clock: Clock) -> None:
    throttle = Throttle(5, max_keys=3, clock=clock)
    for n in range(4):
        throttle.begin(n)
        throttle.end(n, ok=False)
    assert len(throttle) == 3  # the least recently used, 0, was dropped
    assert throttle.wait(0) == 0
    clock.advance(THROTTLE_WINDOW + 1)
    assert throttle.wait(1) == 0
    assert len(throttle) == 0  # nothing left worth keeping


def test_a_refused_key_is_kept_until_its_refusal_and_window_are_over(clock: Clock) -> None:
    throttle = Throttle(1, clock=clock)
    throttle.begin("k")
    throttle.end("k", ok=False)
    clock.advance(THROTTLE_WINDOW)
    assert throttle.wait("other") == 0 and len(throttle) == 1  # refused 60 s, + the window
    clock.advance(61)
    assert throttle.wait("other") == 0 and len(throttle) == 0


def test_a_success_leaves_nothing_behind(clock: Clock) -> None:
    throttle = SignInThrottle(clock)
    for n in range(50):
        succeed(throttle, ("hanoi", f"agent{n}"), f"10.0.0.{n}")
    assert len(throttle.accounts) == 0 and len(throttle.addresses) == 0


def test_filling_the_table_does_not_lift_a_lockout(clock: Clock) -> None:
    throttle = Throttle(2, max_keys=3, clock=clock)
    for _ in range(2):
        throttle.begin("victim")
        throttle.end("victim", ok=False)  # refused for a minute
    assert throttle.wait("victim") > 0
    for n in range(10):  # an attacker's fresh keys, each failing once
        throttle.begin(n)
        throttle.end(n, ok=False)
    assert len(throttle) == 3
    assert throttle.wait("victim") > 0  # still refused: the others made way, not it
