"""The API's listening socket: a port in use is refused by name, and connections are
answered without Nagle's delay."""

from __future__ import annotations

import socket

import pytest

from batchpilot.api.server import bind_socket
from batchpilot.errors import AddressInUse


def test_the_listener_is_tcp_so_asyncio_turns_nagle_off_on_each_connection():
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; with proto 0
    # every answer on a keep-alive connection waited for the client's delayed ACK (40 ms)
    listener = bind_socket("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
    finally:
        listener.close()


def test_a_port_in_use_is_refused_naming_host_and_port():
    taken = bind_socket("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(AddressInUse, match=f"127.0.0.1:{port}"):
            bind_socket("127.0.0.1", port)
    finally:
        taken.close()
