"""An echo server on 127.0.0.1 with Python websockets, for tests/interop.rs.

argv[1] is a JSON object of permessage-deflate settings ({} for websockets'
defaults, {"off": true} for none). Prints its port, then echoes every
message with its type. Text commands: "!frag N TEXT" sends TEXT in N
fragments of one message, "!big N" sends N bytes of JSON-like text, "!drop"
aborts the connection.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


def big(n):
    parts, size, i = [], 0, 0
    while size < n:
        part = '{"seq":%d,"px":%d},' % (i, i * 7 % 1000)
        parts.append(part)
        size += len(part)
        i += 1
    return "".join(parts)[:n]


async def handler(ws):
    async for msg in ws:
        if isinstance(msg, str) and msg.startswith("!"):
            cmd, _, rest = msg.partition(" ")
            if cmd == "!frag":
                n, _, text = rest.partition(" ")
                size = -(-len(text) // int(n))
                await ws.send([text[i : i + size] for i in range(0, len(text), size)])
            elif cmd == "!big":
                await ws.send(big(int(rest)))
            elif cmd == "!drop":
                ws.transport.abort()
                return
            continue
        await ws.send(msg)


async def main():
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if cfg.get("off"):
        options = {"compression": None}
    elif cfg:
        factory = ServerPerMessageDeflateFactory(
            server_no_context_takeover=cfg.get("server_no_context_takeover", False),
            client_no_context_takeover=cfg.get("client_no_context_takeover", False),
            server_max_window_bits=cfg.get("server_max_window_bits"),
            client_max_window_bits=cfg.get("client_max_window_bits"),
        )
        options = {"compression": None, "extensions": [factory]}
    else:
        options = {}  # websockets' default: permessage-deflate, window bits 12
    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None, **options) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


asyncio.run(main())
