"""Passwords and access tokens of the API."""

from __future__ import annotations

import pytest

from cloud.auth import AuthError, Caller, Tokens, check_password, hash_password

NOW = 1_795_000_000.0
DRIVER = Caller("D1234567890", "driver", "M1234567", admin=False)


def test_a_password_checks_only_against_its_own_hash():
    stored = hash_password("correct horse")
    assert check_password("correct horse", stored)
    assert not check_password("correct hors", stored)
    assert not check_password("correct horse", None)
    assert hash_password("correct horse") != stored  # salted


def test_a_token_names_its_caller_until_it_expires():
    tokens = Tokens(b"s" * 32, lifetime=3600)
    token = tokens.issue(DRIVER, NOW)
    assert tokens.check(token, NOW + 3599) == DRIVER
    with pytest.raises(AuthError) as expired:
        tokens.check(token, NOW + 3600)
    assert expired.value.reason == "token_expired"


def test_a_token_signed_with_another_secret_or_altered_is_refused():
    token = Tokens(b"a" * 32).issue(DRIVER, NOW)
    with pytest.raises(AuthError) as other:
        Tokens(b"b" * 32).check(token, NOW)
    assert other.value.reason == "bad_token"
    head, body, sig = token.split(".")
    with pytest.raises(AuthError):
        Tokens(b"a" * 32).check(f"{head}.{body}x.{sig}", NOW)
    with pytest.raises(AuthError):
        Tokens(b"a" * 32).check("not a token", NOW)
