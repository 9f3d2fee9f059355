"""The console's small helpers: relative times, safe return paths, origin checks, signing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from clampdown.config import Config
from clampdown.console.auth import Signer, safe_next, same_origin
from clampdown.console.formatting import iso, relative, span, time_left

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=20), "in 20 s"),
        (timedelta(minutes=52), "in 52 min"),
        (timedelta(hours=-3), "3 h ago"),
        (timedelta(hours=1, minutes=20), "in 1 h 20 min"),
        (timedelta(hours=-26), "26 h ago"),
        (timedelta(days=9), "in 9 d"),
        (timedelta(0), "now"),
    ],
)
def test_relative_times_read_like_speech(delta: timedelta, text: str) -> None:
    assert relative(NOW + delta, NOW) == text


def test_times_are_utc_iso_and_time_left_knows_permanent() -> None:
    assert iso(NOW.replace(microsecond=123)) == "2026-11-27T12:00:00Z"
    assert iso(None) == ""
    assert time_left(None, NOW) == "permanent"
    assert time_left(NOW - timedelta(seconds=1), NOW) == "expired"
    assert time_left(NOW + timedelta(minutes=52, seconds=30), NOW) == "52 min"
    assert span(timedelta(hours=47)) == "47 h"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/console/tasks?status=all", "/console/tasks?status=all"),
        ("/console", "/console"),
        ("/v1/remediations", "/console/"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/console//evil.example", "/console/"),
        ("/console/\\evil", "/console/"),
        ("/console/\r\nSet-Cookie: x=y", "/console/"),
        ("/consolex", "/console/"),
        (None, "/console/"),
    ],
)
def test_return_paths_stay_on_console_pages(given: str | None, kept: str) -> None:
    assert safe_next(given) == kept


def test_the_origin_must_be_this_host_when_the_browser_names_one() -> None:
    assert same_origin({"host": "clampdown.example.com"})
    assert same_origin({"host": "c.example", "origin": "https://c.example"})
    assert same_origin({"host": "c.example", "origin": "http://C.example"})
    assert not same_origin({"host": "c.example", "origin": "https://evil.example"})
    assert not same_origin({"host": "c.example", "origin": "null"})
    assert same_origin({"host": "c.example", "referer": "https://c.example/console/"})
    assert not same_origin({"host": "c.example", "referer": "https://evil.example/c.example"})


def test_a_value_signed_for_one_purpose_is_worthless_for_another() -> None:
    signer = Signer(b"k" * 32)
    value = signer.sign("flash", {"n": "admin"})
    assert signer.read("flash", value) == {"n": "admin"}
    assert signer.read("session", value) is None
    assert Signer(b"j" * 32).read("flash", value) is None
    assert signer.read("flash", value + "x") is None
    assert signer.read("flash", "") is None


def test_the_console_config_section() -> None:
    assert Config().console.session_secret is None
    assert Config().console.session_hours == 12
    with pytest.raises(ValidationError, match="by reference"):
        Config.model_validate({"console": {"session_secret": "inline-secret-value"}})
    with pytest.raises(ValidationError, match="greater than 0"):
        Config.model_validate({"console": {"session_hours": 0}})
    with pytest.raises(ValidationError):
        Config.model_validate({"console": {"lifetime": "1h"}})
