#!/usr/bin/env node
// Fake streaming OpenAI upstream for the Waystation benchmark.
//
// POST /v1/chat/completions with "stream": true answers with CHUNKS content
// chunks: the role chunk and the first content chunk at once, then one content
// chunk every INTERVAL ms (so the whole stream takes (CHUNKS-1)*INTERVAL ms,
// ~190 ms by default), then a finish_reason chunk, a usage chunk when
// stream_options.include_usage is set, and `data: [DONE]`.
// Without "stream": true it answers with a fixed chat.completion JSON.
// GET /health answers "ok".
//
// usage: node sse_server.mjs --port 18082 [--host 127.0.0.1] [--chunks 20] [--interval-ms 10]
import http from 'node:http';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const HOST = arg('host', '127.0.0.1');
const PORT = parseInt(arg('port', process.env.BENCH_SSE_PORT || '18082'), 10);
const CHUNKS = Math.max(1, parseInt(arg('chunks', process.env.BENCH_CHUNKS || '20'), 10));
const INTERVAL = Math.max(0, parseInt(arg('interval-ms', process.env.BENCH_CHUNK_MS || '10'), 10));
const PROMPT_TOKENS = 12;

const CREATED = Math.floor(Date.now() / 1000);
let seq = 0;

const frameCache = new Map(); // model -> {head, tokens[], stop, usage}
function frames(model) {
  let f = frameCache.get(model);
  if (f) return f;
  const m = JSON.stringify(model);
  // "%ID%" is replaced per stream.
  const pre = `data: {"id":"%ID%","object":"chat.completion.chunk","created":${CREATED},"model":${m},"system_fingerprint":"fp_bench","choices":[`;
  const post = `],"usage":null}\n\n`;
  const tokens = [];
  for (let i = 0; i < CHUNKS; i++) {
    const text = i === 0 ? 'Hello' : ` tok${i}`;
    tokens.push(`${pre}{"index":0,"delta":{"content":${JSON.stringify(text)}},"logprobs":null,"finish_reason":null}${post}`);
  }
  f = {
    role: `${pre}{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}${post}`,
    tokens,
    stop: `${pre}{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}${post}`,
    usage: `data: {"id":"%ID%","object":"chat.completion.chunk","created":${CREATED},"model":${m},"system_fingerprint":"fp_bench","choices":[],"usage":{"prompt_tokens":${PROMPT_TOKENS},"completion_tokens":${CHUNKS},"total_tokens":${PROMPT_TOKENS + CHUNKS}}}\n\n`,
  };
  frameCache.set(model, f);
  return f;
}

function completionJSON(model) {
  return JSON.stringify({
    id: `chatcmpl-bench${++seq}`, object: 'chat.completion', created: CREATED, model,
    system_fingerprint: 'fp_bench',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! This is a fixed benchmark reply from the fake upstream.', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: PROMPT_TOKENS, completion_tokens: 14, total_tokens: PROMPT_TOKENS + 14 },
  });
}

function stream(req, res, body) {
  const f = frames(body.model || 'gpt-4o-mini');
  const id = `chatcmpl-bench${++seq}`;
  const sub = (s) => s.replace('%ID%', id);
  const includeUsage = !!(body.stream_options && body.stream_options.include_usage);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  let i = 0;
  let timer = null;
  let closed = false;
  res.on('close', () => { closed = true; if (timer) clearTimeout(timer); });
  const finish = () => {
    let tail = sub(f.stop);
    if (includeUsage) tail += sub(f.usage);
    tail += 'data: [DONE]\n\n';
    res.end(tail);
  };
  const tick = () => {
    timer = null;
    if (closed) return;
    res.write(sub(f.tokens[i++]));
    if (i >= CHUNKS) return finish();
    timer = setTimeout(tick, INTERVAL);
  };
  res.write(sub(f.role));
  tick();
}

const server = http.createServer({ noDelay: true, keepAlive: true }, (req, res) => {
  if (req.method === 'GET' && (req.url === '/health' || req.url === '/v1/health')) {
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end('ok');
  }
  if (req.method !== 'POST' || !req.url.startsWith('/v1/chat/completions')) {
    res.writeHead(404, { 'content-type': 'application/json' });
    return res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
  }
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(parts).toString('utf8') || '{}');
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end('{"error":{"message":"invalid json","type":"invalid_request_error"}}');
    }
    if (body.stream) return stream(req, res, body);
    const out = completionJSON(body.model || 'gpt-4o-mini');
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
    res.end(out);
  });
});
server.keepAliveTimeout = 300_000;
server.headersTimeout = 301_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen({ host: HOST, port: PORT, backlog: 4096 }, () => {
  console.log(`sse upstream listening on http://${HOST}:${PORT} chunks=${CHUNKS} interval=${INTERVAL}ms`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
