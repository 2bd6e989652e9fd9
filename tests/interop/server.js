// An echo server on 127.0.0.1 with Node's ws, for tests/interop.rs.
//
// argv[2] is a JSON object of permessage-deflate settings ({} for ws'
// defaults with every message compressed, {"off": true} for none). Prints
// its port, then echoes every message with its type. Text commands:
// "!frag N TEXT" sends TEXT in N fragments of one message, "!big N" sends N
// bytes of JSON-like text, "!drop" destroys the connection.
'use strict';
const { WebSocketServer } = require('ws');

const cfg = JSON.parse(process.argv[2] || '{}');
let perMessageDeflate = false;
if (!cfg.off) {
  perMessageDeflate = { threshold: 0 };
  if (cfg.server_no_context_takeover) perMessageDeflate.serverNoContextTakeover = true;
  if (cfg.client_no_context_takeover) perMessageDeflate.clientNoContextTakeover = true;
  if (cfg.server_max_window_bits) perMessageDeflate.serverMaxWindowBits = cfg.server_max_window_bits;
  if (cfg.client_max_window_bits) perMessageDeflate.clientMaxWindowBits = cfg.client_max_window_bits;
}

function big(n) {
  const parts = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const part = `{"seq":${i},"px":${(i * 7) % 1000}},`;
    parts.push(part);
    size += part.length;
  }
  return parts.join('').slice(0, n);
}

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate, maxPayload: 256 << 20 });
wss.on('listening', () => console.log(wss.address().port));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString();
      if (text.startsWith('!')) {
        const [cmd, arg, ...rest] = text.split(' ');
        if (cmd === '!frag') {
          const body = rest.join(' ');
          const size = Math.ceil(body.length / Number(arg));
          for (let i = 0; i < body.length; i += size) {
            ws.send(body.slice(i, i + size), { fin: i + size >= body.length });
          }
        } else if (cmd === '!big') {
          ws.send(big(Number(arg)));
        } else if (cmd === '!drop') {
          ws.terminate();
        }
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
});
