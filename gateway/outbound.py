"""Where the server may connect: the outbound network policy against SSRF.

Provider base URLs (config, admin) and webhook URLs (tenant admins) are chosen by people, and
without a policy they make the server call its own loopback, the private network or the cloud
metadata service. Refused: loopback, link-local, private (RFC 1918, fc00::/7), shared
(CGNAT, 100.64.0.0/10), unspecified, multicast, reserved and other non-global addresses, and
the metadata host names, unless the operator allows them: OUTBOUND_ALLOWED_NETWORKS (CIDRs)
by address, OUTBOUND_ALLOWED_HOSTS by exact host name.

A URL is checked when it is saved (`check_url`: its literal address, or every address its
name resolves to now) and again when it is called, on the address actually connected to:
`PolicyResolver` filters what aiohttp connects to (gateway.upstream), `urlopen` resolves, checks
and connects to the checked address itself (webhooks), so a name that later resolves to an
internal address (DNS rebinding) is still refused. Neither follows redirects.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import re
import socket
import urllib.request
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from aiohttp import DefaultResolver
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
POLICY = "OUTBOUND_ALLOWED_NETWORKS"
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = frozenset(
    map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
)
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# The IPv4 forms inet_aton() accepts besides dotted quads: 2130706433, 0x7f000001, 0177.0.0.1.
NUMERIC_V4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.I)


class OutboundRefused(Exception):  # noqa: N818 - reads better at the raise sites
    """A URL or address the policy refuses. Not an OSError, so HTTP clients don't wrap it."""


# --- addresses ---------------------------------------------------------------------------


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why the policy refuses `ip` before any allow-list, or None for a public address."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = (
            ip.ipv4_mapped
            or ip.sixtofour
            or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        )
        if embedded is not None:
            return forbidden_reason(embedded)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared (CGNAT)", ip in SHARED),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def parse_address(text: str) -> IPAddress | None:
    """The address `text` denotes (zone ids dropped, legacy IPv4 forms read), else None."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if NUMERIC_V4.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def refusal(ip: IPAddress | str) -> str | None:
    """None when the server may connect to `ip`, else the reason it may not."""
    address = parse_address(ip) if isinstance(ip, str) else ip
    if address is None:
        return "unparseable"
    if _in_networks(address, settings.OUTBOUND_ALLOWED_NETWORKS):
        return None
    return forbidden_reason(address)


def allowed_address(ip: IPAddress | str) -> bool:
    return refusal(ip) is None


def host_allowed(host: str) -> bool:
    """The operator lists this exact host name in OUTBOUND_ALLOWED_HOSTS."""
    return _normal(host) in _hosts(settings.OUTBOUND_ALLOWED_HOSTS)


def _in_networks(address: IPAddress, spec: str) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return any(address in net or (mapped and mapped in net) for net in _networks(spec))


@lru_cache(maxsize=8)
def _networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            log.error("outbound: ignoring %r in OUTBOUND_ALLOWED_NETWORKS", part)
    return tuple(nets)


@lru_cache(maxsize=8)
def _hosts(spec: str) -> frozenset[str]:
    return frozenset(filter(None, (_normal(h) for h in spec.split(","))))


def _normal(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _refused(host: str, ip: object, reason: str) -> OutboundRefused:
    where = host if str(ip) == host else f"{host} ({ip})"
    return OutboundRefused(
        f"{where} is a {reason} address; outbound calls there are refused unless "
        f"{POLICY} allows it."
    )


def _name_refusal(host: str) -> OutboundRefused | None:
    """A refusal by name alone: a metadata service name, or an address in a forbidden range."""
    if host_allowed(host):
        return None
    if _normal(host) in METADATA_HOSTS:
        return OutboundRefused(
            f"{host} is a cloud metadata service; outbound calls there are refused unless "
            "OUTBOUND_ALLOWED_HOSTS lists it."
        )
    literal = parse_address(host)
    if literal is not None and (reason := refusal(literal)):
        return _refused(host, literal, reason)
    return None


# --- URLs, when saved --------------------------------------------------------------------


def check_url(url: str, *, resolve: bool = True) -> None:
    """Raise OutboundRefused unless the server may call `url`: http(s), a host, and no
    forbidden address, literal or (with `resolve`) among those its name resolves to now. A
    name that doesn't resolve passes: it is checked again on every connection."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError as exc:
        raise OutboundRefused(f"{url!r} is not a valid URL ({exc}).") from None
    if parts.scheme not in ("http", "https") or not host:
        raise OutboundRefused("The URL must start with http:// or https:// and name a host.")
    refused = _name_refusal(host)
    if refused is not None:
        raise refused
    if not resolve or host_allowed(host) or parse_address(host) is not None:
        return
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for *_, sockaddr in infos:
        reason = refusal(str(sockaddr[0]))
        if reason:
            raise _refused(host, sockaddr[0], reason)


@lru_cache(maxsize=1024)
def _literal_refusal(host: str, networks: str, hosts: str) -> str | None:
    refused = _name_refusal(host)
    return str(refused) if refused else None


def check_url_now(url: str) -> None:
    """The call-time check of what a resolver never sees: literal addresses and metadata
    names (aiohttp connects to an IP literal without asking its resolver). Cached per host."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return  # not a URL: the HTTP client refuses it
    message = _literal_refusal(
        host, settings.OUTBOUND_ALLOWED_NETWORKS, settings.OUTBOUND_ALLOWED_HOSTS
    )
    if message:
        raise OutboundRefused(message)


# --- aiohttp: filter what the connector connects to --------------------------------------


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses the policy allows; raises
    OutboundRefused when none is left, so a rebound name never reaches an internal host."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        refused = _name_refusal(host)
        if refused is not None:
            raise refused
        found = await self.inner.resolve(host, port, family)
        if host_allowed(host):
            return found
        kept = [r for r in found if allowed_address(r["host"])]
        if not kept and found:
            first = found[0]["host"]
            raise _refused(host, first, refusal(first) or "forbidden")
        return kept

    async def close(self) -> None:
        await self.inner.close()


# --- urllib: resolve, check, connect to the checked address ------------------------------


def _guarded_connection(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None, **_: Any
) -> socket.socket:
    """socket.create_connection, connecting only to allowed addresses of the host. The
    connection object keeps the host name, so the Host header and TLS SNI and certificate
    check are the name's."""
    host, port = address
    refused = _name_refusal(host)
    if refused is not None:
        raise refused
    if host_allowed(host):
        return socket.create_connection(address, timeout, source_address)
    error: OSError | None = None
    first_refusal = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        reason = refusal(str(sockaddr[0]))
        if reason:
            first_refusal = first_refusal or _refused(host, sockaddr[0], reason)
            continue
        sock = socket.socket(family, kind, proto)
        try:
            if isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    if error is not None:
        raise error
    raise first_refusal or OSError(f"{host} has no address")


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_HTTPSConnection, req, context=self._context)


def _opener() -> urllib.request.OpenerDirector:
    # No redirect handler (a 3xx raises HTTPError) and no proxy handler (a proxy would make
    # the connection, out of the policy's sight).
    opener = urllib.request.OpenerDirector()
    for handler in (
        _HTTPHandler(),
        _HTTPSHandler(),
        urllib.request.UnknownHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


_OPENER = _opener()


def urlopen(request: urllib.request.Request, timeout: float) -> Any:
    """urllib.request.urlopen under the policy: raises OutboundRefused for a forbidden URL
    or address, HTTPError for any non-2xx answer (3xx included: redirects are not followed)."""
    check_url(request.full_url, resolve=False)
    return _OPENER.open(request, timeout=timeout)
