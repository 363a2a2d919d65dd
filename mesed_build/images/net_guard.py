"""SSRF guard: refuse to connect to loopback, private, link-local, multicast and reserved addresses.

Two checks, because either alone has a hole: the host name is resolved and every address checked
before a request (a clear, early refusal, and every redirect hop goes through it again), and the
socket's actual peer address is checked right after connecting (so a DNS answer that changes
between the check and the connection - DNS rebinding - cannot slip through).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(Exception):
    """The target resolves to an address the guard refuses. Not an OSError on purpose: urllib3 must
    not treat it as a network error and retry or wrap it."""

    def __init__(self, host: str, address: str, why: str):
        super().__init__(f"refusing {host}: it resolves to {address} ({why} address)")
        self.host, self.address, self.why = host, address, why


class AddressGuard:
    """Which IP addresses may be connected to. `allow` lists explicit exceptions (IPs or CIDRs),
    e.g. ["127.0.0.1"] for tests that serve from a loopback server."""

    def __init__(self, allow: Iterable[str] = ()):
        self.allow = [ipaddress.ip_network(a, strict=False) for a in allow]

    def why_blocked(self, address: str) -> str | None:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow):
            return None
        for why in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
            if getattr(ip, f"is_{why}"):
                return why.replace("_", "-")
        if not ip.is_global:
            return "non-global"
        return None

    def check_address(self, host: str, address: str) -> None:
        why = self.why_blocked(address)
        if why is not None:
            raise BlockedAddress(host, address, why)

    def check_host(self, host: str, port: int) -> None:
        """Resolve `host` and refuse it if any of its addresses is blocked."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from exc
        for info in infos:
            self.check_address(host, info[4][0])

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.check_host(parts.hostname or "", port)

    # -- the connect-time check, as urllib3 pool classes ---------------------------------------

    def pool_classes(self) -> dict[str, type]:
        guard = self

        def checked(sock, host):
            try:
                peer = sock.getpeername()[0]
                guard.check_address(host, peer)
            except BaseException:
                sock.close()
                raise
            return sock

        class GuardedHTTPConnection(urllib3.connection.HTTPConnection):
            def _new_conn(self):
                return checked(super()._new_conn(), self._dns_host)

        class GuardedHTTPSConnection(urllib3.connection.HTTPSConnection):
            def _new_conn(self):
                return checked(super()._new_conn(), self._dns_host)

        class GuardedHTTPPool(HTTPConnectionPool):
            ConnectionCls = GuardedHTTPConnection

        class GuardedHTTPSPool(HTTPSConnectionPool):
            ConnectionCls = GuardedHTTPSConnection

        return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
