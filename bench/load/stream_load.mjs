#!/usr/bin/env node
// Streaming load client for the Waystation benchmark.
//
// Keeps --concurrency SSE chat-completion streams open for --duration seconds
// (each slot starts a new stream on its keep-alive connection as soon as the
// previous one ends) and prints one JSON summary line: completed streams/s,
// time to first token (request written -> first `data:` frame whose
// choices[0].delta.content is non-empty) p50/p90/p99, full stream time, content
// frames per stream, usage-chunk and [DONE] counts, errors.
//
// It speaks HTTP/1.1 over raw sockets (request pre-serialised, chunked /
// content-length / close-delimited bodies decoded by hand) because node's http
// client costs about twice the CPU, and on a 2-core box every cycle the load
// generator burns is taken from the gateway under test.
//
// usage: node stream_load.mjs --url URL --concurrency 200 --duration 10
//            [--headers '{"authorization":"Bearer x"}'] --body '{"model":...,"stream":true}'
//            [--warmup 2]     seconds of load before the measured window (not counted)
//            [--requests N]   stop after N streams instead (used for the pre-flight check)
//            [--timeout 30] [--grace 5]
import net from 'node:net';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const url = new URL(arg('url', 'http://127.0.0.1:18082/v1/chat/completions'));
const HOST = url.hostname;
const PORT = parseInt(url.port || '80', 10);
const CONC = parseInt(arg('concurrency', '200'), 10);
const DURATION = parseFloat(arg('duration', '10'));
const WARMUP = parseFloat(arg('warmup', '0'));
const MAX_REQ = parseInt(arg('requests', '0'), 10);
const TIMEOUT_MS = parseFloat(arg('timeout', '30')) * 1000;
const GRACE_MS = parseFloat(arg('grace', '5')) * 1000;
const extraHeaders = JSON.parse(arg('headers', '{}'));
const body = Buffer.from(arg('body', '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'));

let head = `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n`
  + 'Content-Type: application/json\r\nAccept: text/event-stream\r\n'
  + `Content-Length: ${body.length}\r\n`;
for (const [k, v] of Object.entries(extraHeaders)) head += `${k}: ${v}\r\n`;
const REQUEST = Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), body]);

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const ttfts = [];
const totals = [];
const chunkCounts = [];
const errors = {};
let started = 0;
let completed = 0; // ok streams finished inside the measured window
let completedLate = 0; // ok streams finished after the window (not counted in the rate)
let completedWarm = 0; // ok streams finished during the warm-up
let noDone = 0;
let usageSeen = 0;
let stopping = false;
let tStart = 0;
let tWin = 0; // start of the measured window (after warm-up)
let tEnd = Infinity;
let sample = null; // first stream's raw head + body, for the pre-flight report
const conns = [];

function addErr(key) { errors[key] = (errors[key] || 0) + 1; }

// One keep-alive connection; runs one stream at a time.
class Conn {
  constructor() {
    this.sock = null;
    this.st = null; // current stream state
    this.rx = '';
  }

  connect() {
    const s = net.connect({ host: HOST, port: PORT });
    s.setNoDelay(true);
    s.on('data', (d) => { if (this.sock === s) this.onData(d.toString('latin1')); });
    s.on('error', (e) => { if (this.sock === s) this.onClose(`sock_${e.code || 'error'}`); });
    s.on('close', () => { if (this.sock === s) this.onClose('closed'); });
    this.sock = s;
    this.rx = '';
  }

  drop() {
    if (this.sock) { const s = this.sock; this.sock = null; s.destroy(); }
    this.rx = '';
  }

  run() {
    return new Promise((resolve) => {
      started++;
      const fresh = !this.sock;
      if (fresh) this.connect();
      this.st = {
        resolve, t0: now(), fresh, gotBytes: false, ttft: -1, content: 0, done: false, usage: false,
        phase: 'head', status: 0, chunked: false, remaining: -1, close: false, chunkNeed: -1,
        sse: '', errBody: '', raw: sample === null ? '' : null,
      };
      this.st.timer = setTimeout(() => this.finish('timeout', true), TIMEOUT_MS);
      this.sock.write(REQUEST);
    });
  }

  onClose(why) {
    this.sock = null;
    const st = this.st;
    if (!st) return;
    if (st.phase === 'body' && !st.chunked && st.remaining < 0) return this.finish(null, false); // close-delimited
    if (!st.gotBytes && !st.fresh && !stopping) {
      // stale keep-alive connection closed under us: retry once on a new one
      st.fresh = true;
      this.connect();
      this.sock.write(REQUEST);
      return;
    }
    this.finish(stopping && why === 'closed' ? 'cut_after_window' : why, true);
  }

  finish(errKey, dropConn) {
    const st = this.st;
    if (!st) return;
    this.st = null;
    clearTimeout(st.timer);
    if (dropConn || st.close) this.drop();
    const t1 = now();
    if (st.raw !== null && sample === null) sample = st.raw.slice(0, 2000);
    if (!errKey && st.status !== 200) errKey = `http_${st.status}`;
    if (!errKey && st.content === 0) errKey = 'no_content';
    if (errKey) {
      if (st.t0 >= tWin || errKey === 'cut_after_window') addErr(errKey);
      else addErr(`warmup_${errKey}`);
    } else {
      if (!st.done) noDone++;
      if (st.usage) usageSeen++;
      if (t1 < tWin) completedWarm++;
      else if (t1 <= tEnd) completed++;
      else completedLate++;
      if (st.t0 >= tWin) { // latency samples: streams started inside the window
        ttfts.push(st.ttft);
        totals.push(t1 - st.t0);
        chunkCounts.push(st.content);
      }
    }
    st.resolve();
  }

  onData(d) {
    const st = this.st;
    if (!st) { this.drop(); return; } // bytes with no request outstanding
    st.gotBytes = true;
    if (st.raw !== null && st.raw.length < 2000) st.raw += d;
    this.rx += d;
    let rx = this.rx;
    let p = 0;
    if (st.phase === 'head') {
      const k = rx.indexOf('\r\n\r\n');
      if (k < 0) return;
      const lines = rx.slice(0, k).split('\r\n');
      const m = /^HTTP\/1\.(\d) (\d{3})/.exec(lines[0]);
      if (!m) { this.rx = ''; return this.finish('bad_status_line', true); }
      st.status = parseInt(m[2], 10);
      st.close = m[1] === '0';
      for (let i = 1; i < lines.length; i++) {
        const c = lines[i].indexOf(':');
        if (c < 0) continue;
        const name = lines[i].slice(0, c).trim().toLowerCase();
        const val = lines[i].slice(c + 1).trim().toLowerCase();
        if (name === 'transfer-encoding' && val.includes('chunked')) st.chunked = true;
        else if (name === 'content-length') st.remaining = parseInt(val, 10);
        else if (name === 'connection') st.close = val.includes('close') ? true : (val.includes('keep-alive') ? false : st.close);
      }
      st.phase = 'body';
      p = k + 4;
      if (!st.chunked && st.remaining === 0) { this.rx = rx.slice(p); return this.finish(null, false); }
    }
    // body
    if (st.chunked) {
      // chunkNeed: -1 = expecting a size line, >0 = data bytes left in this chunk,
      // -2 = data done, expecting its CRLF
      for (;;) {
        if (st.chunkNeed === -2) {
          if (rx.length - p < 2) break;
          p += 2;
          st.chunkNeed = -1;
        }
        if (st.chunkNeed === -1) {
          const e = rx.indexOf('\r\n', p);
          if (e < 0) break;
          const size = parseInt(rx.slice(p, e), 16);
          if (Number.isNaN(size)) { this.rx = ''; return this.finish('bad_chunk', true); }
          if (size === 0) {
            // last chunk: optional trailers, then an empty line
            if (rx.startsWith('\r\n', e + 2)) { p = e + 4; } else {
              const t = rx.indexOf('\r\n\r\n', e + 2);
              if (t < 0) break;
              p = t + 4;
            }
            this.rx = rx.slice(p);
            return this.finish(null, false);
          }
          st.chunkNeed = size;
          p = e + 2;
        }
        const avail = rx.length - p;
        if (avail >= st.chunkNeed + 2) {
          this.feed(rx.substr(p, st.chunkNeed));
          p += st.chunkNeed + 2;
          st.chunkNeed = -1;
          continue;
        }
        // partial chunk: hand over what we have now (lower TTFT), keep the rest pending
        const take = Math.min(avail, st.chunkNeed);
        if (take > 0) { this.feed(rx.substr(p, take)); st.chunkNeed -= take; p += take; }
        if (st.chunkNeed === 0) st.chunkNeed = -2;
        break;
      }
      this.rx = rx.slice(p);
      return;
    }
    const piece = st.remaining >= 0 ? rx.substr(p, st.remaining) : rx.slice(p);
    this.feed(piece);
    this.rx = '';
    if (st.remaining >= 0) {
      st.remaining -= piece.length;
      if (st.remaining <= 0) this.finish(null, false);
    }
  }

  feed(s) {
    const st = this.st;
    if (st.status !== 200) { if (st.errBody.length < 500) st.errBody += s; return; }
    st.sse += s;
    if (st.sse.indexOf('\r') >= 0) st.sse = st.sse.replace(/\r\n?/g, '\n');
    let k;
    while ((k = st.sse.indexOf('\n\n')) >= 0) {
      const ev = st.sse.slice(0, k);
      st.sse = st.sse.slice(k + 2);
      this.onEvent(ev);
    }
  }

  onEvent(ev) {
    const st = this.st;
    let data = '';
    for (const line of ev.split('\n')) {
      if (line.startsWith('data:')) data += line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    }
    if (!data) return;
    if (data === '[DONE]') { st.done = true; return; }
    let obj;
    try { obj = JSON.parse(data); } catch { return; }
    const ch = obj.choices && obj.choices[0];
    const c = ch && ch.delta && ch.delta.content;
    if (c) {
      st.content++;
      if (st.ttft < 0) st.ttft = now() - st.t0;
    }
    if (obj.usage && obj.usage.total_tokens) st.usage = true;
  }
}

async function slot(conn) {
  while (!stopping) {
    if (MAX_REQ && started >= MAX_REQ) break;
    await conn.run();
    if (now() >= tEnd) break;
  }
  conn.drop();
}

function pct(arr, p) {
  if (!arr.length) return null;
  const s = Float64Array.from(arr).sort();
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return Math.round(s[idx] * 1000) / 1000;
}
const mean = (a) => (a.length ? Math.round((a.reduce((x, y) => x + y, 0) / a.length) * 1000) / 1000 : null);

async function main() {
  tStart = now();
  tWin = MAX_REQ ? tStart : tStart + WARMUP * 1000;
  tEnd = MAX_REQ ? Infinity : tWin + DURATION * 1000;
  const slots = [];
  for (let i = 0; i < CONC; i++) { const c = new Conn(); conns.push(c); slots.push(slot(c)); }
  let graceTimer = null;
  if (!MAX_REQ) {
    setTimeout(() => {
      stopping = true;
      graceTimer = setTimeout(() => {
        for (const c of conns) if (c.st) c.finish('cut_after_window', true);
      }, GRACE_MS);
    }, (WARMUP + DURATION) * 1000);
  }
  await Promise.all(slots);
  if (graceTimer) clearTimeout(graceTimer);
  const window = MAX_REQ ? (now() - tStart) / 1000 : DURATION;
  const warmErrors = Object.entries(errors).filter(([k]) => k.startsWith('warmup_'));
  const out = {
    url: url.href, concurrency: CONC, duration_s: window, warmup_s: MAX_REQ ? 0 : WARMUP,
    started, completed, completed_during_warmup: completedWarm, completed_after_window: completedLate,
    streams_per_s: Math.round((completed / window) * 100) / 100,
    ttft_ms: { p50: pct(ttfts, 50), p90: pct(ttfts, 90), p99: pct(ttfts, 99), max: pct(ttfts, 100), mean: mean(ttfts) },
    stream_ms: { p50: pct(totals, 50), p99: pct(totals, 99), mean: mean(totals) },
    content_chunks_per_stream: { mean: mean(chunkCounts), min: chunkCounts.length ? Math.min(...chunkCounts) : null },
    done_missing: noDone, usage_chunk_seen: usageSeen,
    errors,
    error_count: Object.entries(errors)
      .filter(([k]) => k !== 'cut_after_window' && !k.startsWith('warmup_'))
      .reduce((a, [, v]) => a + v, 0),
    warmup_error_count: warmErrors.reduce((a, [, v]) => a + v, 0),
    sample,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}
main();
