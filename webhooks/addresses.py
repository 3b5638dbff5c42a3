"""Which addresses a webhook may reach: the public Internet only, unless the operator
says otherwise (``NOTIFYQ_WEBHOOK_ALLOW_PRIVATE=true``).

A URL is checked twice: at registration (:func:`check_url`, so a mistake is told at
once) and again each time a connection is opened (:func:`guarded_address`, whose
answer is the very address connected to). The second check is the one that holds: a
name that resolved to a public address at registration may resolve to ``127.0.0.1``
or to a cloud's metadata service a minute later (DNS rebinding).

Refused: every address that is not globally routable (loopback, private, link-local —
which holds the metadata services' ``169.254.169.254`` —, carrier-grade NAT, which holds
Alibaba Cloud's ``100.100.100.200``, unspecified, multicast, reserved), and IPv6 forms
that carry an IPv4 address (mapped, 6to4, Teredo) judged by that address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

#: a resolver: host and port to the addresses a connection would try
Resolver = Callable[[str, int], Sequence[str]]
#: cloud metadata services that are not already outside the global range
METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254")})
MAX_URL = 2048


class UnsafeUrl(ValueError):
    """A webhook URL or address refused, saying why (safe to show: no secret in it)."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UnsafeUrl(f"{host} does not resolve ({error.strerror})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def why_forbidden(address: str) -> str | None:
    """Why a connection to ``address`` is refused, or None if it is a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            return why_forbidden(str(inner))
    if ip in METADATA:
        return "a metadata service"
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if not ip.is_global:
        return "not public"
    return None


def guarded_address(
    host: str, port: int, *, allow_private: bool, resolve: Resolver = system_resolver
) -> str:
    """The address to connect to for ``host``: resolved now, and refused
    (:class:`UnsafeUrl`) if any address it resolves to is not public."""
    addresses = resolve(host, port)
    if not addresses:
        raise UnsafeUrl(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            why = why_forbidden(address)
            if why is not None:
                raise UnsafeUrl(f"{host} resolves to {address}, which is {why}")
    return addresses[0]


def check_url(url: str, *, allow_private: bool, resolve: Resolver = system_resolver) -> str:
    """``url`` if a webhook may be sent to it, else :class:`UnsafeUrl` saying why."""
    if len(url) > MAX_URL:
        raise UnsafeUrl(f"at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(f"not a URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("an http:// or https:// URL")
    if not parts.hostname:
        raise UnsafeUrl("the URL names no host")
    if parts.username or parts.password:
        raise UnsafeUrl("no user or password in the URL (the signature proves who sends)")
    if parts.fragment:
        raise UnsafeUrl("no #fragment (it is never sent)")
    default = 443 if parts.scheme == "https" else 80
    guarded_address(parts.hostname, port or default, allow_private=allow_private, resolve=resolve)
    return url
