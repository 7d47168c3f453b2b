"""The upstream API behind the proxy: its connections (made on the first call: a service that
proxies nothing loads no HTTP client; `app.proxy.pool`'s own, or through an environment's proxy
an `httpx.AsyncClient`'s), and which headers cross in each direction.

The app's `Authorization` goes upstream as it came and nowhere else. What goes upstream leaves
out the hop-by-hop headers, the sidecar's own (`X-API-Key` when it is the sidecar's key,
`X-RG-*`) and `Accept-Encoding` (the proxy reads the answer to record it: asked without it,
the upstream answers uncompressed, and one compressed anyway is decoded). What comes back leaves
out the hop-by-hop headers and the body's length and encoding (the body is passed on decoded,
possibly in other chunks)."""

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import httpx

    from app.proxy.pool import UpstreamPool

# RFC 9110 §7.6.1's hop-by-hop headers, and those that describe a body the proxy re-frames.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_NOT_UPSTREAM: Final = _HOP_BY_HOP | {"accept-encoding", "expect"}
_NOT_BACK: Final = _HOP_BY_HOP | {"content-encoding", "set-cookie", "date", "server"}
RG_PREFIX: Final = "x-rg-"
_NOT_BACK_BYTES: Final = frozenset(name.encode() for name in _NOT_BACK)
_RG_PREFIX_BYTES: Final = RG_PREFIX.encode()


def upstream_headers(
    headers: list[tuple[str, str]], *, sidecar_key_header: bool
) -> list[tuple[str, str]]:
    """The request headers sent upstream. `sidecar_key_header`: `X-API-Key` is the sidecar's
    key (authentication on) and stays here."""
    kept: list[tuple[str, str]] = []
    connection_named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            connection_named |= {token.strip().lower() for token in value.split(",")}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _NOT_UPSTREAM or lowered in connection_named or lowered.startswith(RG_PREFIX):
            continue
        if lowered == "x-api-key" and sidecar_key_header:
            continue
        kept.append((name, value))
    return kept


def answer_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The upstream answer's headers passed on to the app (joined per name)."""
    kept: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _NOT_BACK or lowered.startswith(RG_PREFIX):
            continue
        kept[lowered] = f"{kept[lowered]}, {value}" if lowered in kept else value
    return kept


def answer_head(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]] | None:
    """`answer_headers` as the server sends them (lowercased names, bytes), from the answer's
    header bytes: not decoded to be encoded again for the app, on a stream's way to its first
    byte. None for a head that is not all ASCII (`answer_headers` then, decoding as httpx
    does)."""
    if not all(name.isascii() and value.isascii() for name, value in raw):
        return None
    kept: dict[bytes, bytes] = {}
    for name, value in raw:
        lowered = name.lower()
        if lowered in _NOT_BACK_BYTES or lowered.startswith(_RG_PREFIX_BYTES):
            continue
        kept[lowered] = kept[lowered] + b", " + value if lowered in kept else value
    return list(kept.items())


class Upstream:
    """The pooled client to the upstream's base URL, with the proxy's timeouts."""

    def __init__(self, base_url: str, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._connect_s = connect_timeout_s
        self._read_s = read_timeout_s
        self._client: httpx.AsyncClient | None = None
        self._transport: httpx.AsyncBaseTransport | UpstreamPool | None = None
        self._extensions: dict[str, Any] = {}

    def client(self) -> "httpx.AsyncClient":
        """The client, made on first use."""
        if self._client is None:
            import httpx  # noqa: PLC0415 - only once a call is proxied: see the module docstring

            timeout = httpx.Timeout(
                connect=self._connect_s, read=self._read_s, write=self._read_s, pool=self._connect_s
            )
            self._client = httpx.AsyncClient(
                timeout=timeout,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
                follow_redirects=False,
            )
            self._extensions = {"timeout": timeout.as_dict()}
        return self._client

    def transport(self) -> "httpx.AsyncBaseTransport | UpstreamPool":
        """Where the calls go: straight to the upstream, the proxy's own pool
        (`app.proxy.pool`); through an environment's proxy (`HTTPS_PROXY`, ...), the
        transport httpx picks for it. Not through the client, whose own layers (cookies, auth,
        redirects, event hooks, its default headers) are none of the proxy's and cost a tenth
        of its CPU per call. The timeouts travel with each request."""
        if self._transport is None:
            import httpx  # noqa: PLC0415 - with the client

            from app.proxy.pool import UpstreamPool  # noqa: PLC0415 - with httpx

            client, origin = self.client(), httpx.URL(self.base_url)
            picked = client._transport_for_url(origin)
            self._transport = picked
            if picked is client._transport:  # no proxy for it: the direct pool, replaced
                self._transport = UpstreamPool(
                    origin,
                    # httpx's certificate settings (SSL_CERT_FILE, SSL_CERT_DIR, certifi).
                    ssl_context=getattr(getattr(picked, "_pool", None), "_ssl_context", None),
                    connect_timeout_s=self._connect_s,
                    read_timeout_s=self._read_s,
                )
        return self._transport

    async def open(
        self,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> "httpx.Response":
        """Send the call and return the answer with its head read, its body still to stream
        (close it with `aclose()`). `on_sent` is called once the request is on its way, before
        the answer is waited for. Raises httpx's `TimeoutException` or `TransportError`."""
        import httpx  # noqa: PLC0415 - loaded by `client()`

        from app.proxy.pool import UpstreamPool  # noqa: PLC0415 - with httpx

        transport = self.transport()
        if isinstance(transport, UpstreamPool):
            return await transport.open(method, path, query, headers, body, on_sent=on_sent)
        url = f"{self.base_url}/{path}" + (f"?{query}" if query else "")
        request = httpx.Request(
            method, url, headers=headers, content=body or None, extensions=self._extensions
        )
        if on_sent is not None:  # httpx's transport sends and waits in one call
            on_sent()
        answer = await transport.handle_async_request(request)
        answer.request = request
        return answer

    async def close(self) -> None:
        """Close the pool (its idle connections)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            from app.proxy.pool import UpstreamPool  # noqa: PLC0415 - loaded with it

            if isinstance(transport, UpstreamPool):  # httpx's own close with the client
                await transport.aclose()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
