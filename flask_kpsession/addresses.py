"""Binding a session to the client address that created it."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .config import BindPolicy

MAX_ADDRESS_LENGTH = 45

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=4096)
def parse_address(addr: str) -> IPAddress | None:
    """Return the IP address in ``addr``, or ``None`` when it is not one.

    Cached because the request hook parses the same few addresses over and over.
    """
    if not addr or len(addr) > MAX_ADDRESS_LENGTH:
        return None
    try:
        parsed = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        return parsed.ipv4_mapped
    return parsed


def is_valid_address(addr: object) -> bool:
    """Tell whether ``addr`` is an IP address that fits the 45-character column."""
    return isinstance(addr, str) and parse_address(addr) is not None


def _network_of(address: IPAddress) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    prefix = 24 if address.version == 4 else 64
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def address_matches(policy: BindPolicy, stored: str, presented: str) -> bool:
    """Tell whether a request from ``presented`` may use a session from ``stored``.

    :param policy: ``True`` for the exact address, ``"subnet"`` for the same IPv4
        /24 or IPv6 /64, ``False`` for any address.
    """
    if policy is False:
        return True
    if stored == presented:
        return True
    stored_ip = parse_address(stored)
    presented_ip = parse_address(presented)
    if stored_ip is None or presented_ip is None:
        return False
    if policy is True:
        return stored_ip == presented_ip
    if stored_ip.version != presented_ip.version:
        return False
    return presented_ip in _network_of(stored_ip)
