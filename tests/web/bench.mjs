// Dashboard benchmark in Chromium on loopback: the bytes a phone downloads on first load
// of the parents' share page and of the dashboard, and the time from opening a share
// link to the first video frame shown.
//
//   cd tests/web && npm ci && MINGCHU_BIN_DIR=../../target/release node bench.mjs
//
// (./dev.sh bench runs it.) Writes target/bench/dashboard.md.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { makeTempDir, removeTempDir, startProc, stopProc, waitFor } from './procs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN_DIR = process.env.MINGCHU_BIN_DIR ? path.resolve(process.env.MINGCHU_BIN_DIR) : path.join(ROOT, 'target/release');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOKEN = 'web-bench-token';
const OPENS = Number(process.env.MINGCHU_BENCH_OPENS || 20);
const PHONE = { viewport: { width: 360, height: 640 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: 'zh-CN' };

function pct(values, p) {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.round((v.length - 1) * p))];
}

/** Bytes the page downloaded for its own files (not the API or WHEP), as sent (compressed). */
async function firstLoad(browser, url, ready) {
  const context = await browser.newContext(PHONE);
  const page = await context.newPage();
  const files = [];
  page.on('requestfinished', async (req) => {
    const u = new URL(req.url());
    if (u.pathname.startsWith('/api/') || u.pathname.includes('/whep') || u.pathname.endsWith('/info')) return;
    const sizes = await req.sizes().catch(() => null);
    const resp = await req.response().catch(() => null);
    // A second request for a file already here (served from the memory cache) costs nothing.
    if (files.some((f) => f.path === u.pathname) || (sizes?.responseBodySize ?? 0) < 0) return;
    files.push({ path: u.pathname, body: sizes?.responseBodySize ?? 0, headers: sizes?.responseHeadersSize ?? 0, encoding: resp?.headers()['content-encoding'] || 'identity' });
  });
  await page.goto(url, { waitUntil: 'networkidle' });
  await page.locator(ready).first().waitFor({ timeout: 15_000 });
  await page.waitForLoadState('networkidle');
  await context.close();
  return files;
}

/** Milliseconds from navigation start to the first video frame presented. */
async function openToFirstFrame(browser, url) {
  const context = await browser.newContext(PHONE);
  await context.addInitScript(() => {
    const seen = new WeakSet();
    new MutationObserver(() => {
      for (const v of document.querySelectorAll('video')) {
        if (seen.has(v)) continue;
        seen.add(v);
        v.requestVideoFrameCallback(() => {
          if (window.__firstFrameMs === undefined) window.__firstFrameMs = performance.now();
        });
      }
    }).observe(document, { childList: true, subtree: true });
  });
  const page = await context.newPage();
  await page.goto(url);
  const ms = await page.waitForFunction(() => window.__firstFrameMs, null, { timeout: 15_000, polling: 50 });
  const value = await ms.jsonValue();
  await context.close();
  return value;
}

async function main() {
  const tmp = makeTempDir();
  const sim = await startProc('camera-sim', path.join(BIN_DIR, 'camera-sim'), ['--listen', '127.0.0.1:0', '--cameras', '1', '--width', '1280', '--height', '720', '--bitrate-kbps', '2000', '--gop', '50'], { ready: 'camera-sim ready', cwd: tmp });
  const rtsp = sim.ready.match(/rtsp:\/\/127\.0\.0\.1:(\d+)\//)?.[1];
  const config = [
    '[server]', 'listen = "127.0.0.1:0"', `data_dir = ${JSON.stringify(path.join(tmp, 'data'))}`, '',
    '[auth]', `admin_token = "${TOKEN}"`, '', '[webrtc]', 'udp_listen = "127.0.0.1:0"', '', '[detect]', 'enabled = false', '',
    '[[sites]]', 'id = "sunny"', 'name = "阳光小学食堂"', '',
    '[[cameras]]', 'id = "cam1"', 'name = "阳光小学 后厨"', `url = "rtsp://127.0.0.1:${rtsp}/cam1"`, '',
  ].join('\n');
  const configPath = path.join(tmp, 'mingchu.toml');
  fs.writeFileSync(configPath, config, { mode: 0o600 });
  const gw = await startProc('mingchu', path.join(BIN_DIR, 'mingchu'), ['--config', configPath], { ready: 'mingchu listening on', cwd: tmp, env: { RUST_LOG: 'warn', NO_COLOR: '1' } });
  const base = gw.ready.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)?.[1];
  const api = async (p, init = {}) => {
    const r = await fetch(`${base}${p}`, { ...init, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
    if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  await waitFor('cam1 online', async () => ({ ok: (await api('/api/cameras/cam1')).state === 'online' }), 20_000);
  const link = await api('/api/shares', { method: 'POST', body: JSON.stringify({ site: 'sunny', label: 'bench' }) });
  process.env.TMPDIR = tmp;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
  try {
    const share = await firstLoad(browser, `${base}${link.path}`, 'video');
    const dash = await firstLoad(browser, `${base}/`, '#login-submit');
    // One open to warm the gateway and the browser's caches of nothing: each measured open
    // is a fresh context, so it downloads and connects from scratch.
    await openToFirstFrame(browser, `${base}${link.path}`);
    const times = [];
    for (let i = 0; i < OPENS; i++) times.push(await openToFirstFrame(browser, `${base}${link.path}`));
    const sum = (files) => files.reduce((a, f) => a + f.body, 0);
    const rows = (files) => files.map((f) => `| \`${f.path.startsWith('/s/') ? '/s/{token}' : f.path}\` | ${f.body} | ${f.encoding} |`).join('\n');
    const report = [
      '# Dashboard benchmark',
      '',
      `Chromium (headless, phone viewport 360 × 640) on loopback; release build; one 720p25 camera at 2 Mbit/s, 2 s GOP. Bytes are response bodies as sent (after gzip), from the browser's own accounting; the API calls and WHEP are left out.`,
      '',
      `| first load | files | bytes on the wire | goal |`,
      `|---|---|---|---|`,
      `| parents' share page \`/s/{token}\` (until its video plays) | ${share.length} | ${sum(share)} (${(sum(share) / 1024).toFixed(1)} KiB) | ≤ 150 KB |`,
      `| dashboard \`/\` (the login page, ready) | ${dash.length} | ${sum(dash)} (${(sum(dash) / 1024).toFixed(1)} KiB) | — |`,
      '',
      `Open a share link → first video frame presented (requestVideoFrameCallback, from navigation start), ${OPENS} fresh browser contexts: p50 ${pct(times, 0.5).toFixed(0)} ms, p90 ${pct(times, 0.9).toFixed(0)} ms, max ${Math.max(...times).toFixed(0)} ms (goal ≤ 1000 ms: ${pct(times, 0.9) <= 1000 ? 'met at p90' : 'not met at p90'}).`,
      '',
      '<details><summary>files</summary>',
      '',
      '| share page file | bytes | encoding |', '|---|---|---|', rows(share), '',
      '| dashboard file | bytes | encoding |', '|---|---|---|', rows(dash), '',
      '</details>',
      '',
    ].join('\n');
    console.log(report);
    const out = path.join(ROOT, 'target/bench');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, 'dashboard.md'), report);
    console.error(`report written to ${path.join(out, 'dashboard.md')}`);
  } finally {
    await browser.close().catch(() => {});
    await stopProc(gw);
    await stopProc(sim);
    removeTempDir();
  }
}

await main();
