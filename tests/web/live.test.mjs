// The live page in a real browser: camera-sim → mingchu → Chromium (WHEP/WebRTC).
//
//   cd tests/web && npm ci && node --test
//
// Needs the debug binaries (`cargo build --workspace --bins`) and Chromium at
// /usr/bin/chromium (Debian package `chromium`). Environment:
//   MINGCHU_BIN_DIR   where mingchu and camera-sim are (default <repo>/target/debug)
//   CHROMIUM          the browser executable (default /usr/bin/chromium)
//   E2E_VERBOSE=1     print the processes' and the browser's output as it comes
//   MINGCHU_LOG       RUST_LOG for the gateway (default info,str0m=warn)
// Everything listens on 127.0.0.1 only. The screenshot goes to target/web-test/live.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN_DIR = process.env.MINGCHU_BIN_DIR ? path.resolve(process.env.MINGCHU_BIN_DIR) : path.join(ROOT, 'target/debug');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOT_DIR = path.join(ROOT, 'target/web-test');
const VERBOSE = !!process.env.E2E_VERBOSE;
const TOKEN = 'web-e2e-test-token';
// The account the page logs in with: the site's own reviewer.
const USER = 'li.reviewer';
const PASSWORD = '厨房安全-web-e2e-pass';
const CAMERA_NAME = '阳光小学 后厨';
const WIDTH = 640;
const HEIGHT = 360;

// ---------------------------------------------------------------- processes

const children = new Set();
let tmp, sim, gw, base, browser;
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

// Never leave a camera-sim, a gateway or a temp dir behind, whatever happens to this process.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 2 });
});
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

/** Starts `bin` and resolves once a stdout line contains `ready`; that line is kept as `proc.ready`. */
async function startProc(name, bin, args, { ready, cwd, env = {}, timeoutMs = 20_000 }) {
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} is missing: build the workspace binaries first (cargo build --workspace --bins), or set MINGCHU_BIN_DIR`);
  }
  // With setpriv (util-linux), the kernel kills the child should this process die
  // without cleaning up (SIGKILL, a crashed test runner).
  const [cmd, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', bin, ...args]] : [bin, args];
  const child = spawn(cmd, argv, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const proc = { name, child, log: [] };
  const keep = (line) => {
    proc.log.push(line);
    if (proc.log.length > 200) proc.log.shift();
    if (VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
  };
  createInterface({ input: child.stderr }).on('line', keep);
  const out = createInterface({ input: child.stdout });
  out.on('line', keep);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`printed no "${ready}" within ${timeoutMs} ms`), timeoutMs);
    const onLine = (line) => { if (line.includes(ready)) { proc.ready = line; done(); } };
    const onExit = (code, signal) => fail(`exited (${signal || code}) before printing "${ready}"`);
    const onError = (e) => fail(`cannot start: ${e.message}`);
    function cleanup() {
      clearTimeout(timer);
      out.off('line', onLine);
      child.off('exit', onExit);
      child.off('error', onError);
    }
    function done() { cleanup(); resolve(); }
    function fail(why) { cleanup(); reject(new Error(`${name} ${why}\n${tail(proc)}`)); }
    out.on('line', onLine);
    child.on('exit', onExit);
    child.on('error', onError);
  });
  return proc;
}

/** SIGTERM, then SIGKILL if it has not exited within 5 s; waits for the exit. */
async function stopProc(proc) {
  if (!proc) return;
  const { child } = proc;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  }
  children.delete(child);
}

const TMP_PREFIX = 'mingchu-web-';

/** Removes the temp dirs of earlier runs that were killed before they could (their pid is gone). */
function removeStaleTempDirs() {
  const dir = os.tmpdir();
  for (const name of fs.readdirSync(dir)) {
    const pid = Number(name.startsWith(TMP_PREFIX) && name.slice(TMP_PREFIX.length).split('-')[0]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (e) {
      if (e.code === 'ESRCH') fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    }
  }
}

function tail(proc, n = 40) {
  return proc ? `--- ${proc.name} (last lines) ---\n${proc.log.slice(-n).join('\n')}` : '';
}

// ---------------------------------------------------------------- fixture

const browserLog = [];

async function api(pathname, token = TOKEN) {
  const resp = await fetch(`${base}${pathname}`, { headers: { Authorization: `Bearer ${token}` } });
  const body = await resp.text();
  if (!resp.ok) throw new Error(`GET ${pathname}: ${resp.status} ${body}`);
  return JSON.parse(body);
}

async function camera(id) {
  const cams = await api('/api/cameras');
  const cam = cams.find((c) => c.id === id);
  assert.ok(cam, `camera ${id} is not in /api/cameras: ${JSON.stringify(cams)}`);
  return cam;
}

/** Polls `probe` until it returns `{ ok: true, … }`; fails with `what` and the last answer. */
async function waitFor(what, probe, timeoutMs, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last;
    if (Date.now() >= deadline) throw new Error(`${what} within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(everyMs);
  }
}

/** A fresh browser context (own storage) with a phone's viewport and zh-CN locale. */
async function phoneContext() {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  });
  // Log every peer connection's state changes to the console (no webrtc-internals headless).
  await context.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    window.__pcs = [];
    window.RTCPeerConnection = class extends Native {
      constructor(...args) {
        super(...args);
        const n = window.__pcs.push(this) - 1;
        const log = () => console.log(`[pc${n}] connection=${this.connectionState} ice=${this.iceConnectionState}`);
        this.addEventListener('connectionstatechange', log);
        this.addEventListener('iceconnectionstatechange', log);
      }
    };
  });
  return context;
}

function watch(page) {
  const keep = (line) => {
    browserLog.push(line);
    if (browserLog.length > 200) browserLog.shift();
    if (VERBOSE) process.stderr.write(`[browser] ${line}\n`);
  };
  page.on('console', (m) => keep(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => keep(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => keep(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
}

/** Runs `body`; on failure adds the page's WebRTC state and the processes' logs to the error. */
async function withDiagnostics(page, body) {
  try {
    await body();
  } catch (e) {
    let pcs = '';
    if (page && !page.isClosed()) {
      pcs = await page
        .evaluate(async () => {
          const out = [];
          for (const pc of window.__pcs || []) {
            const pairs = [];
            (await pc.getStats()).forEach((s) => {
              if (s.type === 'candidate-pair') pairs.push(`${s.state}${s.nominated ? ' nominated' : ''} rx=${s.bytesReceived}`);
              if (s.type === 'inbound-rtp') pairs.push(`inbound ${s.kind} frames=${s.framesDecoded} bytes=${s.bytesReceived}`);
            });
            out.push(`connection=${pc.connectionState} ice=${pc.iceConnectionState} signaling=${pc.signalingState} ${pairs.join('; ')}`);
          }
          const state = document.querySelector('.state');
          return `${out.join('\n')}\nstate label: ${state ? `${state.className} "${state.textContent}"` : 'none'}`;
        })
        .catch((err) => `(page state unavailable: ${err.message})`);
    }
    e.message += `\n--- peer connections ---\n${pcs}\n--- browser ---\n${browserLog.slice(-40).join('\n')}\n${tail(gw)}\n${tail(sim, 15)}`;
    throw e;
  }
}

describe('live page in Chromium', { timeout: 120_000 }, () => {
  before(async () => {
    removeStaleTempDirs();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${TMP_PREFIX}${process.pid}-`));
    // Every process binds port 0 and prints the port it got: nothing probes for a free port.
    sim = await startProc(
      'camera-sim',
      path.join(BIN_DIR, 'camera-sim'),
      ['--listen', '127.0.0.1:0', '--cameras', '1', '--width', String(WIDTH), '--height', String(HEIGHT)],
      { ready: 'camera-sim ready', cwd: tmp },
    );
    const rtsp = sim.ready.match(/rtsp:\/\/127\.0\.0\.1:(\d+)\//)?.[1];
    assert.ok(rtsp, `camera-sim printed its RTSP port: ${sim.ready}`);
    const config = [
      '[server]',
      'listen = "127.0.0.1:0"',
      `data_dir = ${JSON.stringify(path.join(tmp, 'data'))}`,
      '',
      '[auth]',
      `admin_token = "${TOKEN}"`,
      '',
      '[webrtc]',
      'udp_listen = "127.0.0.1:0"',
      '',
      '[detect]',
      'enabled = false',
      '',
      '[[cameras]]',
      'id = "cam1"',
      `name = "${CAMERA_NAME}"`,
      `url = "rtsp://127.0.0.1:${rtsp}/cam1"`,
      '',
    ].join('\n');
    const configPath = path.join(tmp, 'mingchu.toml');
    fs.writeFileSync(configPath, config, { mode: 0o600 });
    const added = spawnSync(
      path.join(BIN_DIR, 'mingchu'),
      ['--config', configPath, 'user', 'add', '--role', 'reviewer', '--sites', 'default', '--password-stdin', USER],
      { input: `${PASSWORD}\n`, encoding: 'utf8' },
    );
    assert.equal(added.status, 0, `mingchu user add: ${added.stderr}`);
    gw = await startProc('mingchu', path.join(BIN_DIR, 'mingchu'), ['--config', configPath], {
      ready: 'mingchu listening on',
      cwd: tmp,
      env: { RUST_LOG: process.env.MINGCHU_LOG || 'info,str0m=warn', NO_COLOR: '1' },
    });
    base = gw.ready.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)?.[1];
    assert.ok(base, `mingchu printed its address: ${gw.ready}`);
    // Ingest first, so the page's timings below measure the live path alone.
    await waitFor('cam1 online', async () => {
      const cam = await camera('cam1');
      return { ok: cam.state === 'online' && cam.width === WIDTH, state: cam.state, width: cam.width };
    }, 20_000);

    // Chromium's profile and Playwright's artifacts go under tmp too (os.tmpdir() reads TMPDIR).
    process.env.TMPDIR = tmp;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      // A fresh temporary profile (under tmp), removed again by browser.close().
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // The gateway's only ICE candidate is 127.0.0.1.
        '--allow-loopback-in-peer-connection',
        '--disable-features=WebRtcHideLocalIpsWithMdns',
      ],
      timeout: 30_000,
    });
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await stopProc(gw);
    await stopProc(sim);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function logIn(page, password) {
    await page.locator('#name').fill(USER);
    await page.locator('#password').fill(password);
    await page.locator('#go').click();
  }

  test('a wrong password shows 账号或密码错误 and no video', async () => {
    const context = await phoneContext();
    const page = await context.newPage();
    watch(page);
    try {
      await withDiagnostics(page, async () => {
        await page.goto(`${base}/`);
        await logIn(page, 'not-the-password');
        const hint = page.locator('#grid .hint');
        await hint.filter({ hasText: '账号或密码错误' }).waitFor({ timeout: 5_000 });
        assert.equal(await page.locator('#grid video').count(), 0, 'no video with a wrong password');
      });
    } finally {
      await context.close();
    }
  });

  let context, page;

  test('the camera plays on a phone-sized page', async (t) => {
    context = await phoneContext();
    page = await context.newPage();
    watch(page);
    await withDiagnostics(page, async () => {
      await page.goto(`${base}/`);
      const clicked = Date.now();
      await logIn(page, PASSWORD);

      const video = page.locator('video[data-camera="cam1"]');
      await video.waitFor({ state: 'attached', timeout: 5_000 });
      // (a) the first picture arrives at the camera's size
      await page.waitForFunction(
        ([w, h]) => {
          const v = document.querySelector('video[data-camera="cam1"]');
          return v && v.videoWidth === w && v.videoHeight === h;
        },
        [WIDTH, HEIGHT],
        { timeout: 10_000, polling: 50 },
      );
      t.diagnostic(`first picture ${Date.now() - clicked} ms after the click`);
      const route = await page.evaluate(async () => {
        const stats = await window.__pcs.at(-1).getStats();
        for (const s of stats.values()) {
          if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
          const pair = stats.get(s.selectedCandidatePairId);
          const end = (id) => { const c = stats.get(id); return `${c.candidateType} ${c.address}:${c.port}`; };
          return `${end(pair.localCandidateId)} -> ${end(pair.remoteCandidateId)}`;
        }
        return 'no selected candidate pair';
      });
      t.diagnostic(`ICE: ${route}`);

      // (b) playing, not frozen: time and decoded frames move on
      const sample = () =>
        video.evaluate(async (v) => {
          let decoded = 0;
          for (const pc of window.__pcs) {
            (await pc.getStats()).forEach((s) => {
              if (s.type === 'inbound-rtp' && s.kind === 'video') decoded += s.framesDecoded;
            });
          }
          // The next painted frame's count; null if nothing is painted within a second.
          const presented = await new Promise((r) => {
            setTimeout(() => r(null), 1_000);
            v.requestVideoFrameCallback((_, m) => r(m.presentedFrames));
          });
          return { time: v.currentTime, decoded, presented, paused: v.paused };
        });
      // A window of playback, compared with what the camera sent in the same window as
      // the gateway counts it: a frozen picture gives nothing, a busy machine only less.
      const a = await sample();
      const startedAt = performance.now();
      await sleep(2_000);
      const b = await sample();
      const elapsed = (performance.now() - startedAt) / 1000;
      const cameraFps = (await camera('cam1')).fps;
      const moved = {
        time: +(b.time - a.time).toFixed(2),
        decoded: b.decoded - a.decoded,
        presented: a.presented === null || b.presented === null ? null : b.presented - a.presented,
      };
      const sent = cameraFps * elapsed;
      t.diagnostic(`in ${elapsed.toFixed(2)} s: currentTime +${moved.time} s, frames decoded +${moved.decoded}, painted +${moved.presented}; the camera sent ≈${sent.toFixed(0)} (${cameraFps.toFixed(1)} fps)`);
      assert.equal(b.paused, false, 'the video is not paused');
      assert.ok(cameraFps > 0, `the camera is streaming (${cameraFps} fps)`);
      assert.ok(moved.time > 0.6 * elapsed, `currentTime advanced ${moved.time} s in ${elapsed.toFixed(2)} s`);
      assert.ok(moved.decoded >= 0.6 * sent, `${moved.decoded} frames decoded of ≈${sent.toFixed(0)} sent`);
      assert.ok(moved.presented >= 0.4 * sent, `${moved.presented} frames painted of ≈${sent.toFixed(0)} sent`);

      // (c) the camera's name and (d) the live state, in the same tile
      const tile = page.locator('figure', { has: video });
      await assert.doesNotReject(
        tile.locator('figcaption', { hasText: CAMERA_NAME }).waitFor({ state: 'visible', timeout: 2_000 }),
        `caption shows ${CAMERA_NAME}`,
      );
      const state = tile.locator('.state');
      await state.and(page.locator('.state.live')).waitFor({ timeout: 5_000 });
      assert.equal(await state.getAttribute('class'), 'state live');
      assert.match(await state.textContent(), /直播|live/);

      // logged in as the reviewer, by name and role
      assert.match(await page.locator('#whoami').textContent(), /li\.reviewer.*reviewer/);
      // the session is a cookie the page's scripts cannot read
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === 'mingchu_session');
      assert.ok(session?.httpOnly, `HttpOnly session cookie: ${JSON.stringify(cookies)}`);
      assert.equal(await page.evaluate(() => document.cookie), '', 'not visible to scripts');

      // one viewer, as the gateway sees it
      const cam = await camera('cam1');
      assert.equal(cam.viewers, 1, `viewers in /api/cameras: ${JSON.stringify(cam)}`);

      fs.mkdirSync(SHOT_DIR, { recursive: true });
      await page.screenshot({ path: path.join(SHOT_DIR, 'live.png') });
    });
  });

  test('closing the page releases the viewer', async (t) => {
    assert.ok(page, 'the page from the previous test');
    await withDiagnostics(null, async () => {
      const closed = Date.now();
      // Like closing a tab: pagehide runs, and the player sends its WHEP DELETE.
      await page.close({ runBeforeUnload: true });
      await context.close();
      await waitFor('the viewer released', async () => {
        const cam = await camera('cam1');
        return { ok: cam.viewers === 0, viewers: cam.viewers };
      }, 20_000, 200);
      const left = gw.log.findLast((l) => l.includes('viewer left'));
      t.diagnostic(`viewer released ${Date.now() - closed} ms after closing the page (${left?.match(/reason=\S+/)?.[0] ?? 'no log line'})`);
    });
  });

  async function share(body) {
    const resp = await fetch(`${base}/api/shares`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(resp.status, 201, `POST /api/shares: ${await resp.clone().text()}`);
    return resp.json();
  }

  test('a parent opens a share link and watches that kitchen, and nothing else', async (t) => {
    const link = await share({ site: 'default', label: '三年级二班家长群' });
    const ctx = await phoneContext();
    const parent = await ctx.newPage();
    watch(parent);
    try {
      await withDiagnostics(parent, async () => {
        const opened = Date.now();
        await parent.goto(`${base}${link.path}`);
        await parent.waitForFunction(
          ([w, h]) => {
            const v = document.querySelector('video[data-camera="cam1"]');
            return v && v.videoWidth === w && v.videoHeight === h && v.currentTime > 0;
          },
          [WIDTH, HEIGHT],
          { timeout: 10_000, polling: 50 },
        );
        t.diagnostic(`parent's first picture ${Date.now() - opened} ms after opening the link`);
        assert.match(await parent.locator('#site').textContent(), /默认站点/);
        assert.match(await parent.locator('#label').textContent(), /三年级二班家长群/);
        assert.equal(await parent.locator('video').count(), 1, 'the shared camera only');
        // No login, and the link opens no API: the page cannot list events.
        const events = await parent.evaluate(async () => (await fetch('/api/events')).status);
        assert.equal(events, 401);
        // Revoked while watching: the view ends and the page says so.
        const revoke = await fetch(`${base}/api/shares/${link.id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${TOKEN}` } });
        assert.equal(revoke.status, 200);
        await parent.locator('#grid .hint', { hasText: '已停用' }).waitFor({ timeout: 20_000 });
        assert.equal(await parent.locator('video').count(), 0);
      });
    } finally {
      await ctx.close();
    }
  });

  test('an expired share link shows its page, not an error', async () => {
    const link = await share({ site: 'default', expires_in_days: 0.00001 });
    await waitFor('the link expired', async () => {
      const r = await fetch(`${base}${link.path}/info`);
      return { ok: r.status === 410, status: r.status };
    }, 10_000, 200);
    const ctx = await phoneContext();
    const parent = await ctx.newPage();
    watch(parent);
    try {
      await withDiagnostics(parent, async () => {
        const resp = await parent.goto(`${base}${link.path}`);
        assert.equal(resp.status(), 200, 'a page, not a bare error');
        await parent.locator('#grid .hint', { hasText: '已过期' }).waitFor({ timeout: 5_000 });
        assert.equal(await parent.locator('video').count(), 0);
      });
    } finally {
      await ctx.close();
    }
  });
});
