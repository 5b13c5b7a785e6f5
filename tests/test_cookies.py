"""SessionCookie: each attribute it writes, the checks on its options, the tolerant reader."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import cookie_parser
from starlette.responses import Response

from sessionkit.cookies import SessionCookie, read_cookie
from sessionkit.keys import new_key


def attributes(header: str) -> tuple[str, dict[str, str]]:
    """Split a Set-Cookie value into its ``name=value`` pair and its attributes."""
    pair, *rest = header.split("; ")
    attrs: dict[str, str] = {}
    for item in rest:
        name, _, value = item.partition("=")
        attrs[name.lower()] = value
    return pair, attrs


def test_the_defaults_are_owasps() -> None:
    key = new_key()
    pair, attrs = attributes(SessionCookie().header(key))
    assert pair == f"__Host-session={key}"
    assert attrs == {"path": "/", "secure": "", "httponly": "", "samesite": "Lax"}


@pytest.mark.parametrize(
    ("options", "present", "absent"),
    [
        ({"secure": False}, {"httponly": ""}, {"secure"}),
        ({"http_only": False}, {"secure": ""}, {"httponly"}),
        ({"same_site": "strict"}, {"samesite": "Strict"}, set()),
        ({"same_site": "none"}, {"samesite": "None", "secure": ""}, set()),
        ({"path": "/api"}, {"path": "/api"}, {"domain"}),
        ({"domain": "example.com"}, {"domain": "example.com"}, set()),
    ],
    ids=["no secure", "no httponly", "strict", "none", "path", "domain"],
)
def test_each_attribute(options: dict[str, Any], present: dict[str, str], absent: set[str]) -> None:
    cookie = SessionCookie("sid", **options)
    _, attrs = attributes(cookie.header("k"))
    for name, value in present.items():
        assert attrs[name] == value
    assert not absent & attrs.keys()
    assert "max-age" not in attrs and "expires" not in attrs  # a browser-session cookie


def test_clear_expires_the_cookie_with_the_same_attributes() -> None:
    pair, attrs = attributes(SessionCookie().clear_header())
    assert pair == '__Host-session=""'
    assert attrs["max-age"] == "0"
    assert attrs["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    # A __Host- cookie is only replaced by one with the same prefix rules: Secure, Path=/.
    assert (attrs["secure"], attrs["path"], attrs["httponly"]) == ("", "/", "")


def test_set_and_clear_write_headers_on_a_starlette_response() -> None:
    cookie = SessionCookie()
    key = new_key()
    response = Response()
    cookie.set(response, key)
    cookie.clear(response)
    written = [v.decode() for k, v in response.raw_headers if k == b"set-cookie"]
    assert written == [cookie.header(key), cookie.clear_header()]


@pytest.mark.parametrize(
    ("args", "options", "error"),
    [
        (("__Host-session",), {"secure": False}, ValueError),
        (("__Host-session",), {"path": "/api"}, ValueError),
        (("__Host-session",), {"domain": "example.com"}, ValueError),
        (("__Secure-session",), {"secure": False}, ValueError),
        (("sid",), {"same_site": "none", "secure": False}, ValueError),
        (("sid",), {"same_site": "sometimes"}, ValueError),
        (("",), {}, ValueError),
        (("bad name",), {}, ValueError),
        (("sid;x",), {}, ValueError),
        (("sid",), {"path": "api"}, ValueError),
        (("sid",), {"path": "/a;b"}, ValueError),
        (("sid",), {"domain": "exa mple.com"}, ValueError),
        (("sid",), {"secure": "yes"}, TypeError),
        (("sid",), {"http_only": 1}, TypeError),
    ],
)
def test_options_browsers_would_refuse_are_refused(
    args: tuple[Any, ...], options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        SessionCookie(*args, **options)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        SessionCookie("sid", False)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["", "a b", "a;b", 'a"b', "é", None, "abc\n", "abc\r\nX: y"])
def test_a_value_that_is_no_key_is_refused_without_being_quoted(value: Any) -> None:
    with pytest.raises(ValueError) as raised:
        SessionCookie().header(value)
    if value:
        assert value not in str(raised.value)


def test_of_takes_a_cookie_or_a_name() -> None:
    cookie = SessionCookie("sid", same_site="strict")
    assert SessionCookie.of(cookie) is cookie
    assert SessionCookie.of("sid") == SessionCookie("sid", secure=False)
    assert SessionCookie.of("__Host-x").secure is True
    assert SessionCookie.of("__Secure-x").secure is True
    with pytest.raises(TypeError):
        SessionCookie.of(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "neighbours",
    [
        'prefs={"a": 1}',
        "name=John Doe",
        "a=1;;",
        "justaword",
        'quoted="x;y"',
        "=nameless",
        "a=b=c",
        "ünïcode=wert",
    ],
)
def test_malformed_neighbours_never_hide_the_key(neighbours: str) -> None:
    key = new_key()
    for header in (
        f"{neighbours}; __Host-session={key}",
        f"__Host-session={key}; {neighbours}",
        f"{neighbours};__Host-session={key};{neighbours}",
    ):
        assert read_cookie(header, "__Host-session") == key
        assert SessionCookie().read(header) == key


def test_read_cookie_edge_cases() -> None:
    assert read_cookie("", "sid") is None
    assert read_cookie("sid", "sid") is None  # a bare word is a nameless value
    assert read_cookie("sid=", "sid") is None
    assert read_cookie('sid=""', "sid") is None
    assert read_cookie('sid="abc"', "sid") == "abc"
    assert read_cookie("xsid=1; sidx=2", "sid") is None
    assert read_cookie("  sid  =  abc  ", "sid") == "abc"
    assert read_cookie("sid=first; sid=second", "sid") == "first"  # longest path comes first


@pytest.mark.parametrize(
    "header",
    [
        "a=1; b=2",
        'prefs={"a": 1}; sid=k',
        "name=John Doe; sid=k",
        "a=1;; sid=k",
        'sid="k"; x=y',
        "x; sid=k",
    ],
)
def test_read_cookie_agrees_with_starlettes_parser(header: str) -> None:
    # Starlette's parser is the reference for tolerance (it follows Django's and browsers').
    assert read_cookie(header, "sid") == (cookie_parser(header).get("sid") or None)


@pytest.mark.parametrize(
    "options",
    [{"name": "sid\n"}, {"name": "sid", "path": "/\n"}, {"name": "sid", "domain": "a.example\n"}],
    ids=["name", "path", "domain"],
)
def test_a_trailing_newline_is_refused_not_written_into_a_header(options: dict[str, Any]) -> None:
    # A header injection otherwise: "$" in a pattern matches before a final newline.
    with pytest.raises(ValueError):
        SessionCookie(secure=False, **options)


@pytest.mark.parametrize("max_age", [0, -1, 1.5, True, "60"])
def test_a_persistent_cookie_needs_a_positive_whole_max_age(max_age: Any) -> None:
    with pytest.raises(ValueError, match="max_age"):
        SessionCookie().header("abc", max_age=max_age)
    assert SessionCookie().header("abc", max_age=60) == (
        "__Host-session=abc; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax"
    )
