#!/usr/bin/env python3
"""An HTTP/3 client we did not write (aioquic): range requests to one URL.

Usage: h3_range.py CA_PEM URL RANGE...   (RANGE like "bytes=0-99")
Prints one JSON object per range: status, content-range, body (base64).
All requests share one QUIC connection; the server must speak h3 on the
URL's host:port (127.0.0.1 only).
"""
import asyncio
import base64
import json
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}

    def quic_event_received(self, event):
        for e in self.h3.handle_event(event):
            w = self.waiting.get(e.stream_id)
            if w is None:
                continue
            if isinstance(e, HeadersReceived):
                w["headers"] = {k.decode(): v.decode() for k, v in e.headers}
            elif isinstance(e, DataReceived):
                w["body"] += e.data
            if getattr(e, "stream_ended", False):
                w["done"].set_result(None)

    async def get(self, url, range_):
        u = urlparse(url)
        sid = self._quic.get_next_available_stream_id()
        w = {"headers": {}, "body": b"", "done": asyncio.get_running_loop().create_future()}
        self.waiting[sid] = w
        path = u.path + (("?" + u.query) if u.query else "")
        self.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", u.netloc.encode()),
                                   (b":path", path.encode()), (b"range", range_.encode()), (b"user-agent", b"aioquic")],
                             end_stream=True)
        self.transmit()
        await asyncio.wait_for(w["done"], 30)
        return w


async def main(ca, url, ranges):
    u = urlparse(url)
    if u.hostname not in ("localhost", "127.0.0.1"):
        sys.exit("loopback only")
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    cfg.load_verify_locations(ca)
    async with connect("127.0.0.1", u.port, configuration=cfg, create_protocol=H3Client) as client:
        for r in ranges:
            w = await client.get(url, r)
            h = w["headers"]
            print(json.dumps({"range": r, "status": int(h.get(":status", "0")), "content_range": h.get("content-range"),
                              "body": base64.b64encode(w["body"]).decode()}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
