"""HTTP requests, for devices that speak HTTP and for cloud services, over `wasi:http`.

Blocking, the whole answer read into memory (:func:`get_all` sends several requests at
once)::

    from iot2mqtt import http

    status = http.post(f"http://{host}/rpc", json={"id": 1, "method": "Shelly.GetStatus"},
                       timeout=3).raise_for_status().json()

The host makes each request and decides where it may go: the instance's devices' addresses
and the hosts the connector's manifest declares (`"network": {"http": [...]}`). It does TLS.
Anything else is refused before it leaves, and raises :class:`~iot2mqtt.Unreachable` saying
so, as do a device that does not answer in time and one that cannot be reached. Redirects
are followed here (at most :data:`MAX_REDIRECTS`), each one a new request the host checks.
"""

from __future__ import annotations

import json as _json
from typing import Any, Dict, List, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import monotonic_clock as _clock
from wit_world.imports import outgoing_handler as _handler
from wit_world.imports import streams as _streams
from wit_world.imports import wasi_http_types as _http

from .errors import CommandFailed, Unreachable
from .net import _wait

__all__ = ["MAX_REDIRECTS", "Response", "delete", "get", "get_all", "post", "put", "refresh_oauth", "request"]

#: Redirects followed for one request.
MAX_REDIRECTS = 5
#: The most one write hands to the host (`wasi:io` guarantees 4096 bytes).
_CHUNK = 4096

_METHODS = {
    "GET": _http.Method_Get, "POST": _http.Method_Post, "PUT": _http.Method_Put,
    "DELETE": _http.Method_Delete, "PATCH": _http.Method_Patch, "HEAD": _http.Method_Head,
    "OPTIONS": _http.Method_Options,
}


class Response:
    """An answer, read in full."""

    def __init__(self, url: str, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        """The first header called `name` (any case)."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def raise_for_status(self) -> "Response":
        """Itself when the status is 2xx; :class:`~iot2mqtt.CommandFailed` otherwise."""
        if not self.ok:
            text = self.text().strip()[:200]
            raise CommandFailed(f"{self.url}: HTTP status {self.status}" + (f": {text}" if text else ""))
        return self

    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON; :class:`~iot2mqtt.CommandFailed` when it is not."""
        try:
            return _json.loads(self.body)
        except ValueError as error:
            raise CommandFailed(f"{self.url}: the answer is not JSON ({error})") from None


def request(method: str, url: str, *, headers: Optional[Dict[str, str]] = None, json: Any = None,
            body: Optional[bytes] = None, timeout: float = 10.0) -> Response:
    """Send a request and read the whole answer, following redirects."""
    fields = {k.lower(): v for k, v in (headers or {}).items()}
    if json is not None:
        body = _json.dumps(json).encode()
        fields.setdefault("content-type", "application/json")
    method = method.upper()
    for _ in range(MAX_REDIRECTS + 1):
        response = _send(method, url, fields, body or b"", timeout)
        location = response.header("location")
        if response.status not in (301, 302, 303, 307, 308) or location is None:
            return response
        url = _join(url, location)
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, body = "GET", None
    raise CommandFailed(f"{url}: more than {MAX_REDIRECTS} redirects")


def get(url: str, **options: Any) -> Response:
    """`GET url`; the options of :func:`request`."""
    return request("GET", url, **options)


def post(url: str, **options: Any) -> Response:
    """`POST url`; the options of :func:`request`."""
    return request("POST", url, **options)


def put(url: str, **options: Any) -> Response:
    """`PUT url`; the options of :func:`request`."""
    return request("PUT", url, **options)


def delete(url: str, **options: Any) -> Response:
    """`DELETE url`; the options of :func:`request`."""
    return request("DELETE", url, **options)


def get_all(urls: List[str], *, headers: Optional[Dict[str, str]] = None,
            timeout: float = 10.0) -> List[Union[Response, Exception]]:
    """`GET` every URL at once, for polling many devices in the time of the slowest.

    The requests are in flight together (the host allows a few per plugin at a time and
    refuses the rest with :class:`~iot2mqtt.Unreachable` saying so). The answers come back
    in the order of `urls`, each a :class:`Response`, or the exception its request raised;
    a redirect is then followed on its own, as :func:`get` would.
    """
    fields = {k.lower(): v for k, v in (headers or {}).items()}
    started: List[Union[_InFlight, Exception]] = []
    for url in urls:
        try:
            started.append(_start("GET", url, fields, b"", timeout))
        except (CommandFailed, Unreachable) as error:
            started.append(error)
    answers: List[Union[Response, Exception]] = []
    for flight in started:
        try:
            answers.append(flight.finish() if isinstance(flight, _InFlight) else flight)
        except (CommandFailed, Unreachable) as error:
            answers.append(error)
    # Redirects once every first request is done, so they do not count against the others.
    for i, answer in enumerate(answers):
        location = answer.header("location") if isinstance(answer, Response) else None
        if location is not None and answer.status in (301, 302, 303, 307, 308):
            try:
                answers[i] = request("GET", _join(urls[i], location), headers=fields, timeout=timeout)
            except (CommandFailed, Unreachable) as error:
                answers[i] = error
    return answers


def _split(url: str) -> Tuple[bool, str, str]:
    """`(https, authority, path-with-query)` of an absolute http(s) URL."""
    if url.startswith("https://"):
        https, rest = True, url[len("https://"):]
    elif url.startswith("http://"):
        https, rest = False, url[len("http://"):]
    else:
        raise CommandFailed(f"{url!r} is not an http:// or https:// URL")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:].split("#", 1)[0]
    if not authority or "@" in authority or " " in authority:
        raise CommandFailed(f"{url!r} has no usable host")
    return https, authority, path if path.startswith("/") else "/" + path


def _join(base: str, location: str) -> str:
    if location.startswith(("http://", "https://")):
        return location
    https, authority, path = _split(base)
    scheme = "https" if https else "http"
    if location.startswith("//"):
        return f"{scheme}:{location}"
    if location.startswith("/"):
        return f"{scheme}://{authority}{location}"
    folder = path.split("?", 1)[0].rsplit("/", 1)[0]
    return f"{scheme}://{authority}{folder}/{location}"


def _send(method: str, url: str, headers: Dict[str, str], body: bytes, timeout: float) -> Response:
    return _start(method, url, headers, body, timeout).finish()


class _InFlight:
    """A request the host is making: its answer is read by :meth:`finish`."""

    def __init__(self, url: str, pending: Any, deadline: int, timeout: float) -> None:
        self.url, self.pending, self.deadline, self.timeout = url, pending, deadline, timeout

    def finish(self) -> Response:
        url, pending = self.url, self.pending
        while True:
            answer = pending.get()
            if answer is not None:
                break
            if not _wait(pending.subscribe(), self.deadline):
                pending.__exit__(None, None, None)
                raise Unreachable(f"{url}: no answer within {self.timeout:g} s")
        pending.__exit__(None, None, None)
        if isinstance(answer, Err):
            raise CommandFailed(f"{url}: the answer was already taken")
        inner = answer.value
        if isinstance(inner, Err):
            raise _failure(url, inner.value)
        response = inner.value
        status = response.status()
        with response.headers() as got:
            pairs = [(name.lower(), value.decode("utf-8", "replace")) for name, value in got.entries()]
        incoming = response.consume()
        data = _read(url, incoming, self.deadline, self.timeout)
        response.__exit__(None, None, None)
        return Response(url, status, pairs, data)


def _start(method: str, url: str, headers: Dict[str, str], body: bytes, timeout: float) -> _InFlight:
    """Hand the request to the host, body included; the answer is awaited by the caller."""
    https, authority, path = _split(url)
    try:
        fields = _http.Fields.from_list([(k, v.encode()) for k, v in headers.items()])
    except Err as error:
        raise CommandFailed(f"{url}: a header is not allowed ({error.value})") from None
    outgoing = _http.OutgoingRequest(fields)
    kind = _METHODS.get(method)
    outgoing.set_method(kind() if kind else _http.Method_Other(method))
    outgoing.set_scheme(_http.Scheme_Https() if https else _http.Scheme_Http())
    outgoing.set_authority(authority)
    outgoing.set_path_with_query(path)
    out_body = outgoing.body()
    options = _http.RequestOptions()
    nanos = max(1, int(timeout * 1e9))
    # The host caps these at its own limits.
    for setter in (options.set_connect_timeout, options.set_first_byte_timeout, options.set_between_bytes_timeout):
        try:
            setter(nanos)
        except Err:
            pass
    deadline = _clock.now() + nanos
    try:
        pending = _handler.handle(outgoing, options)
    except Err as error:
        raise _failure(url, error.value) from None
    stream = out_body.write()
    try:
        for start in range(0, len(body), _CHUNK):
            stream.blocking_write_and_flush(body[start:start + _CHUNK])
    except Err:
        pass  # the request failed; its future says why
    finally:
        stream.__exit__(None, None, None)
    try:
        _http.OutgoingBody.finish(out_body, None)
    except Err as error:
        raise _failure(url, error.value) from None
    return _InFlight(url, pending, deadline, timeout)


def _read(url: str, incoming: _http.IncomingBody, deadline: int, timeout: float) -> bytes:
    stream = incoming.stream()
    chunks: List[bytes] = []
    try:
        while True:
            try:
                data = stream.read(65536)
            except Err as error:
                if isinstance(error.value, _streams.StreamError_Closed):
                    return b"".join(chunks)
                raise _broken(url, error.value.value) from None
            if data:
                chunks.append(data)
            elif not _wait(stream.subscribe(), deadline):
                raise Unreachable(f"{url}: the answer did not arrive within {timeout:g} s")
    finally:
        stream.__exit__(None, None, None)
        incoming.__exit__(None, None, None)


def _broken(url: str, io_error: Any) -> Exception:
    """The SDK's error for a response body that broke off: the host's limit, a timeout, or the
    connection. (wasmtime-wasi-http 48 gives body errors no `error-code`, only their text.)"""
    code = _http.http_error_code(io_error)
    if code is not None:
        return _failure(url, code)
    detail = io_error.to_debug_string()
    if "body size exceeds limit" in detail:
        return CommandFailed(f"{url}: the answer is larger than the host accepts")
    if "timeout" in detail:
        return Unreachable(f"{url}: no answer in time")
    return Unreachable(f"{url}: the answer broke off ({detail})")


def _failure(url: str, code: Any) -> Exception:
    """The SDK's error for a `wasi:http` error code."""
    if isinstance(code, _http.ErrorCode_HttpRequestDenied):
        return Unreachable(f"{url}: the request was refused by the host (not granted to this plugin)")
    if isinstance(code, _http.ErrorCode_ConnectionLimitReached):
        return Unreachable(f"{url}: the request was refused by the host (too many requests open at once)")
    if isinstance(code, _http.ErrorCode_DestinationIpProhibited):
        return Unreachable(f"{url}: the request was refused by the host (the name resolves to an address not granted)")
    if isinstance(code, (_http.ErrorCode_ConnectionTimeout, _http.ErrorCode_ConnectionReadTimeout,
                         _http.ErrorCode_HttpResponseTimeout)):
        return Unreachable(f"{url}: no answer in time")
    if isinstance(code, _http.ErrorCode_ConnectionRefused):
        return Unreachable(f"{url}: the connection was refused")
    if isinstance(code, _http.ErrorCode_TlsCertificateError):
        return Unreachable(f"{url}: its TLS certificate is not trusted (pin a device's own with tls_sha256)")
    if isinstance(code, _http.ErrorCode_HttpResponseBodySize):
        return CommandFailed(f"{url}: the answer is larger than the host accepts")
    return Unreachable(f"{url}: {type(code).__name__.removeprefix('ErrorCode_')}")


def refresh_oauth(provider: str, token_url: str, refresh_token: str, client_id: str,
                  client_secret: Optional[str] = None, timeout: float = 10.0) -> str:
    """Trade `refresh_token` for a new access token at an OAuth 2 token endpoint (its host
    declared in the manifest), store the new tokens through the host as
    `<provider>_access_token` and `<provider>_refresh_token` (so a restart or a hot swap starts
    with them), and return the access token. A refused refresh raises
    :class:`~iot2mqtt.CommandFailed` with the provider's reason."""
    from . import store_secret

    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret is not None:
        form["client_secret"] = client_secret
    body = "&".join(f"{_form_encode(k)}={_form_encode(v)}" for k, v in form.items())
    answer = request("POST", token_url, body=body.encode(),
                     headers={"content-type": "application/x-www-form-urlencoded"}, timeout=timeout)
    if not answer.ok:
        try:
            reason = answer.json().get("error") or f"HTTP status {answer.status}"
        except (CommandFailed, AttributeError):
            reason = f"HTTP status {answer.status}"
        raise CommandFailed(f"{provider} refused to refresh the token ({reason}); sign in again")
    tokens = answer.json()
    access = tokens.get("access_token") if isinstance(tokens, dict) else None
    if not isinstance(access, str):
        raise CommandFailed(f"{provider}'s answer has no access_token")
    store_secret(f"{provider}_access_token", access)
    if isinstance(tokens.get("refresh_token"), str):
        store_secret(f"{provider}_refresh_token", tokens["refresh_token"])
    return access


def _form_encode(text: str) -> str:
    """`application/x-www-form-urlencoded` (componentize-py's standard library has no urllib)."""
    safe = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(b) if b in safe else "+" if b == 0x20 else f"%{b:02X}" for b in text.encode())
