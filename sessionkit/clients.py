"""Comparing the client of a request with the one recorded at login: the hijack signals of
:meth:`SessionManager.check_client` (OWASP: "Binding the Session ID to Other User
Properties").

Both comparisons are coarse on purpose. A browser updates itself (its version changes) and a
phone moves between cell towers (its address changes within its carrier's network), and
neither is a hijack; a stolen cookie replayed from another machine usually shows another
browser family or another network.
"""

from __future__ import annotations

import ipaddress
from typing import Final, Literal

from sessionkit.models import ClientInfo

__all__ = ("BrowserFamily", "browser_family", "client_changed", "network_of")

BrowserFamily = Literal["chrome", "edge", "firefox", "safari", "opera", "other"]

# Markers in a User-Agent header, most specific first: Edge and Opera also say "Chrome/", and
# every Chromium browser also says "Safari/". The iOS variants (CriOS, FxiOS, EdgiOS, OPiOS)
# are WebKit inside, but name the browser the user chose.
_MARKERS: Final[tuple[tuple[str, BrowserFamily], ...]] = (
    ("Edg/", "edge"),
    ("EdgA/", "edge"),
    ("EdgiOS/", "edge"),
    ("Edge/", "edge"),  # EdgeHTML, before Chromium
    ("OPR/", "opera"),
    ("OPiOS/", "opera"),
    ("OPT/", "opera"),
    ("Opera", "opera"),  # Presto: "Opera/9.80 ..."
    ("Firefox/", "firefox"),
    ("FxiOS/", "firefox"),
    ("CriOS/", "chrome"),
    ("Chrome/", "chrome"),
    ("Chromium/", "chrome"),
    ("Safari/", "safari"),
)
_IPV4_PREFIX: Final = 24
_IPV6_PREFIX: Final = 48


def browser_family(user_agent: str | None) -> BrowserFamily:
    """Name the browser family of a ``User-Agent`` header.

    >>> browser_family("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    ...                " Chrome/120.0.0.0 Safari/537.36")
    'chrome'

    :param user_agent: the header's value, or ``None``.
    :return: ``"chrome"``, ``"edge"``, ``"firefox"``, ``"safari"``, ``"opera"``, or
        ``"other"`` (anything else, ``None`` and ``""`` included).
    """
    if user_agent:
        for marker, family in _MARKERS:
            if marker in user_agent:
                return family
    return "other"


def network_of(ip: str | None) -> str | None:
    """Name the network an IP address belongs to: its /24 for IPv4, its /48 for IPv6 (an
    IPv4-mapped IPv6 address counts as IPv4).

    :param ip: an address as ASGI servers give it, or ``None``.
    :return: the network (``"192.0.2.0/24"``, ``"2001:db8:1::/48"``), or ``None`` for
        ``None`` or anything that is not an IP address (a Unix socket's path, a test client's
        ``"testclient"``).
    """
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])  # a zone (fe80::1%eth0) says nothing
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = _IPV4_PREFIX if address.version == 4 else _IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def client_changed(recorded: ClientInfo, current: ClientInfo) -> bool:
    """Tell whether a request's client differs from the one recorded at login: another
    browser family, or another network (see :func:`browser_family`, :func:`network_of`).

    What either side does not know (no ``User-Agent``, no IP address) is not compared: a
    missing value is no evidence either way.

    :param recorded: the client recorded at login (``SessionDetails.client``).
    :param current: the request's client (:func:`sessionkit.starlette.client_info`).
    :return: ``True`` if the family or the network changed.
    """
    agents = recorded.user_agent, current.user_agent
    if all(agents) and browser_family(agents[0]) != browser_family(agents[1]):
        return True
    before, now = network_of(recorded.ip), network_of(current.ip)
    return before is not None and now is not None and before != now
