"""TCP to devices, for plugins written in Python.

componentize-py's standard library has no `socket` module, so this speaks `wasi:sockets`
directly, with blocking calls that each take a timeout::

    from iot2mqtt import net

    with net.connect(device.get("host"), device.get("port"), timeout=3) as bulb:
        bulb.send(b'{"id":1,"method":"toggle","params":[]}\\r\\n')
        answer = bulb.recv_line()

The host lets a plugin reach only what its instance was granted: each device's `host`, `ip`
or `address` with its `port`, and the instance connection's host. Any other address fails
with :class:`~iot2mqtt.Unreachable` naming it, as does a device that refuses, does not
answer in time, or cannot be resolved; a plugin that lets it propagate answers the command
or read with `DEVICE_UNREACHABLE`.

A call blocks the plugin (and, in a shared lane, the instance's other devices) until it
returns, so keep timeouts short. UDP is not offered yet.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import instance_network as _instance_network
from wit_world.imports import ip_name_lookup as _lookup
from wit_world.imports import monotonic_clock as _clock
from wit_world.imports import network as _network
from wit_world.imports import poll as _poll
from wit_world.imports import streams as _streams
from wit_world.imports import tcp as _tcp
from wit_world.imports import tcp_create_socket as _create

from .errors import Unreachable

__all__ = ["Connection", "connect"]

#: The most one write hands to the host (`wasi:io` guarantees 4096 bytes).
_CHUNK = 4096


def connect(host: str, port: int, timeout: float = 5.0) -> "Connection":
    """Open a TCP connection to `host` (an IPv4 address or a name) on `port`."""
    if not isinstance(host, str) or not host:
        raise Unreachable("no host to connect to")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise Unreachable(f"{port!r} is not a TCP port")
    deadline = _clock.now() + _nanos(timeout)
    network = _instance_network.instance_network()
    target = f"{host}:{port}"
    last = "no address"
    for address in _resolve(network, host, deadline):
        socket = _create.create_tcp_socket(_family(address))
        try:
            socket.start_connect(network, _socket_address(address, port))
            while True:
                try:
                    input, output = socket.finish_connect()
                    return Connection(target, socket, input, output)
                except Err as error:
                    if error.value != _network.ErrorCode.WOULD_BLOCK:
                        raise
                if not _wait(socket.subscribe(), deadline):
                    raise Unreachable(f"{target} did not accept a connection within {timeout:g} s")
        except Err as error:
            socket.__exit__(None, None, None)
            last = _describe(error.value)
            if error.value == _network.ErrorCode.ACCESS_DENIED:
                raise Unreachable(f"{target} is not granted to this instance") from None
        except BaseException:
            socket.__exit__(None, None, None)
            raise
    raise Unreachable(f"cannot connect to {target}: {last}")


class Connection:
    """An open TCP connection. Close it (or use it in a `with` block) when done."""

    def __init__(self, target: str, socket: _tcp.TcpSocket, input: _streams.InputStream,
                 output: _streams.OutputStream) -> None:
        self.target = target
        self._socket = socket
        self._input = input
        self._output = output
        self._buffer = b""
        self._closed = False

    def send(self, data: bytes) -> None:
        """Send all of `data`."""
        self._check_open()
        try:
            for start in range(0, len(data), _CHUNK):
                self._output.blocking_write_and_flush(data[start:start + _CHUNK])
        except Err as error:
            raise Unreachable(f"{self.target}: the connection failed while sending ({_describe(error.value)})") from None

    def recv(self, size: int = 65536, timeout: float = 5.0) -> bytes:
        """Up to `size` bytes, as soon as some arrive; `b""` once the device closed the
        connection. :class:`~iot2mqtt.Unreachable` when nothing arrives within `timeout`."""
        self._check_open()
        if self._buffer:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        deadline = _clock.now() + _nanos(timeout)
        while True:
            try:
                data = self._input.read(size)
            except Err as error:
                if isinstance(error.value, _streams.StreamError_Closed):
                    return b""
                raise Unreachable(f"{self.target}: the connection failed ({_describe(error.value)})") from None
            if data:
                return data
            if not _wait(self._input.subscribe(), deadline):
                raise Unreachable(f"{self.target} sent nothing within {timeout:g} s")

    def recv_line(self, timeout: float = 5.0, limit: int = 65536) -> bytes:
        """The next line, without its `\\n` (and `\\r`); what is left at the end of the
        stream when the device closes without one."""
        deadline = _clock.now() + _nanos(timeout)
        while b"\n" not in self._buffer:
            if len(self._buffer) > limit:
                raise Unreachable(f"{self.target} sent a line longer than {limit} bytes")
            remaining = max(0.0, (deadline - _clock.now()) / 1e9)
            data = self.recv(65536, remaining) if remaining > 0 else b""
            if not data:
                if remaining <= 0:
                    raise Unreachable(f"{self.target} sent no whole line within {timeout:g} s")
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def close(self) -> None:
        """Close the connection; further calls fail."""
        if self._closed:
            return
        self._closed = True
        for resource in (self._input, self._output, self._socket):
            resource.__exit__(None, None, None)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise Unreachable(f"the connection to {self.target} is closed")


def _nanos(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


def _wait(pollable: _poll.Pollable, deadline: int) -> bool:
    """Wait for `pollable` until `deadline` (monotonic nanoseconds); whether it got ready."""
    timer = _clock.subscribe_duration(max(0, deadline - _clock.now()))
    try:
        return 0 in _poll.poll([pollable, timer])
    finally:
        timer.__exit__(None, None, None)
        pollable.__exit__(None, None, None)


def _resolve(network: _network.Network, host: str, deadline: int) -> List[_network.IpAddress]:
    literal = _ipv4(host)
    if literal is not None:
        return [_network.IpAddress_Ipv4(literal)]
    try:
        stream = _lookup.resolve_addresses(network, host)
    except Err as error:
        raise Unreachable(f"cannot look up {host}: {_describe(error.value)}") from None
    addresses: List[_network.IpAddress] = []
    try:
        while True:
            try:
                address = stream.resolve_next_address()
            except Err as error:
                if error.value != _network.ErrorCode.WOULD_BLOCK:
                    raise Unreachable(f"cannot look up {host}: {_describe(error.value)}") from None
                if not _wait(stream.subscribe(), deadline):
                    raise Unreachable(f"looking up {host} took too long") from None
                continue
            if address is None:
                break
            addresses.append(address)
    finally:
        stream.__exit__(None, None, None)
    if not addresses:
        raise Unreachable(f"{host} has no address")
    return addresses


def _ipv4(host: str) -> Optional[Tuple[int, int, int, int]]:
    parts = host.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    a, b, c, d = (int(p) for p in parts)
    return (a, b, c, d)


def _family(address: _network.IpAddress) -> _network.IpAddressFamily:
    if isinstance(address, _network.IpAddress_Ipv4):
        return _network.IpAddressFamily.IPV4
    return _network.IpAddressFamily.IPV6


def _socket_address(address: _network.IpAddress, port: int) -> _network.IpSocketAddress:
    if isinstance(address, _network.IpAddress_Ipv4):
        return _network.IpSocketAddress_Ipv4(_network.Ipv4SocketAddress(port, address.value))
    return _network.IpSocketAddress_Ipv6(_network.Ipv6SocketAddress(port, 0, address.value, 0))


def _describe(error: object) -> str:
    if isinstance(error, _network.ErrorCode):
        return error.name.lower().replace("_", " ")
    return type(error).__name__
