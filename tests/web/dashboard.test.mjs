// The dashboard and the parents' page in a real browser: camera-sim (the kitchen scene,
// which makes the detector raise events) → mingchu (serving web/dist) → Chromium.
//
//   (cd web && npm ci && npm run build) && cd tests/web && npm ci && node --test
//
// Needs the debug binaries (`cargo build --workspace --bins`), the model and ONNX Runtime
// from `./dev.sh setup`, and Chromium at /usr/bin/chromium (Debian package `chromium`).
// Environment:
//   MINGCHU_BIN_DIR   where mingchu and camera-sim are (default <repo>/target/debug)
//   CHROMIUM          the browser executable (default /usr/bin/chromium)
//   E2E_VERBOSE=1     print the processes' and the browser's output as it comes
//   MINGCHU_LOG       RUST_LOG for the gateway (default info,str0m=warn)
// One gateway serves every flow. Everything listens on 127.0.0.1 only. Screenshots go to
// target/web-test/*.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { VERBOSE, makeTempDir, removeTempDir, startProc, stopProc, tail, waitFor } from './procs.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN_DIR = process.env.MINGCHU_BIN_DIR ? path.resolve(process.env.MINGCHU_BIN_DIR) : path.join(ROOT, 'target/debug');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOT_DIR = path.join(ROOT, 'target/web-test');
const DIST = path.join(ROOT, 'web/dist');
const TOKEN = 'web-e2e-test-token';
const AXE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const pw = (name) => `password-${name}-e2e`;
const ACCOUNTS = [
  ['admin', 'admin', '*'],
  ['regulator', 'wang', '*'],
  ['operator', 'zhao', 'sunny'],
];

let sim, gw, base, browser;
const problems = [];

// ---------------------------------------------------------------- the gateway's API

async function api(pathname, { method = 'GET', body } = {}) {
  const resp = await fetch(`${base}${pathname}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${pathname}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Events with a finished clip, of the given sites and status, oldest first. */
async function readyEvents(sites, status = 'new') {
  const events = await api('/api/events?limit=200');
  return events.filter((e) => sites.includes(e.site) && e.status === status && e.clip_state === 'ready' && e.has_snapshot).reverse();
}

// ---------------------------------------------------------------- the browser

const PHONE = { viewport: { width: 360, height: 640 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const DESKTOP = { viewport: { width: 1280, height: 800 } };

async function newContext(device) {
  const context = await browser.newContext({ ...device, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  return context;
}

/** A page whose console errors and warnings, page errors and failed requests are kept. */
async function newPage(context, label) {
  const page = await context.newPage();
  page.__label = label;
  page.__problems = [];
  const keep = (line) => {
    page.__problems.push(line);
    if (VERBOSE) process.stderr.write(`[${label}] ${line}\n`);
  };
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') keep(`console.${m.type()}: ${m.text()} (${m.location()?.url || ''})`);
    else if (VERBOSE) process.stderr.write(`[${label}] console.${m.type()}: ${m.text()}\n`);
  });
  page.on('pageerror', (e) => keep(`pageerror: ${e.message}`));
  return page;
}

/** The page as it is now: a screenshot, axe-core's WCAG 2 A/AA checks, and no console errors. */
async function check(page, name) {
  fs.mkdirSync(SHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SHOT_DIR, `${name}.png`) });
  // Run through evaluate: the page's CSP would refuse an injected script tag.
  const result = await page.evaluate(`${AXE}; axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } })`);
  const violations = result.violations.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  assert.deepEqual(violations, [], `axe-core on ${name}`);
  assert.deepEqual(page.__problems, [], `console on ${name}`);
}

async function logIn(page, name) {
  await page.goto(`${base}/login`);
  await page.locator('#login-name').fill(name);
  await page.locator('#login-password').fill(pw(name));
  await page.locator('#login-submit').click();
  await page.waitForURL((u) => u.pathname === '/sites', { timeout: 10_000 });
}

/** Resolves once the video's currentTime moves on (it plays, not frozen). */
async function plays(page, selector, timeout = 15_000) {
  await page.locator(selector).first().waitFor({ state: 'attached', timeout });
  const t0 = await page.waitForFunction(
    (sel) => {
      const v = document.querySelector(sel);
      return v && v.readyState >= 2 && v.currentTime > 0 ? v.currentTime : null;
    },
    selector,
    { timeout, polling: 100 },
  );
  const start = await t0.jsonValue();
  await page.waitForFunction(([sel, s]) => document.querySelector(sel)?.currentTime > s + 0.5, [selector, start], { timeout: 5_000, polling: 100 });
}

/** Runs `body`; on failure adds the processes' logs to the error. */
async function withDiagnostics(page, body) {
  try {
    await body();
  } catch (e) {
    const shot = page && !page.isClosed() ? await page.screenshot({ path: path.join(SHOT_DIR, `failed-${page.__label}.png`) }).then(() => `screenshot: target/web-test/failed-${page.__label}.png`).catch(() => '') : '';
    e.message += `\n${shot}\n--- browser ---\n${(page?.__problems || []).join('\n')}\n${tail(gw)}\n${tail(sim, 10)}`;
    throw e;
  }
}

// ---------------------------------------------------------------- fixture

describe('dashboard in Chromium', { timeout: 240_000 }, () => {
  before(async () => {
    if (!fs.existsSync(path.join(DIST, 'index.html'))) {
      const built = spawnSync('sh', ['-c', 'npm ci --no-audit --no-fund --silent && npm run build'], { cwd: path.join(ROOT, 'web'), encoding: 'utf8' });
      assert.equal(built.status, 0, `web build: ${built.stdout}\n${built.stderr}`);
    }
    const tmp = makeTempDir();
    sim = await startProc(
      'camera-sim',
      path.join(BIN_DIR, 'camera-sim'),
      ['--listen', '127.0.0.1:0', '--cameras', '3', '--width', '640', '--height', '360', '--scene', 'default', '--scene-offset-s', '10', '--photos', path.join(ROOT, '.tools/photos')],
      { ready: 'camera-sim ready', cwd: tmp },
    );
    const rtsp = sim.ready.match(/rtsp:\/\/127\.0\.0\.1:(\d+)\//)?.[1];
    assert.ok(rtsp, `camera-sim printed its RTSP port: ${sim.ready}`);
    const camera = (id, name, site) => ['[[cameras]]', `id = "${id}"`, `name = "${name}"`, `site = "${site}"`, `url = "rtsp://127.0.0.1:${rtsp}/${id}"`, ''];
    const config = [
      '[server]',
      'listen = "127.0.0.1:0"',
      `data_dir = ${JSON.stringify(path.join(tmp, 'data'))}`,
      `ui_dir = ${JSON.stringify(DIST)}`,
      '',
      '[auth]',
      `admin_token = "${TOKEN}"`,
      '',
      '[webrtc]',
      'udp_listen = "127.0.0.1:0"',
      '',
      '[detect]',
      `model = ${JSON.stringify(path.join(ROOT, 'models/nanodet-g-416.toml'))}`,
      `ort_library = ${JSON.stringify(path.join(ROOT, '.tools/onnxruntime/libonnxruntime.so.1.32.0'))}`,
      '',
      '[events]',
      'pre_roll_s = 2',
      'post_roll_s = 2',
      '',
      '[[sites]]',
      'id = "sunny"',
      'name = "阳光小学食堂"',
      'kind = "school"',
      'district = "东城区"',
      '',
      '[[sites]]',
      'id = "redstar"',
      'name = "红星幼儿园"',
      'kind = "kindergarten"',
      'district = "西城区"',
      '',
      ...camera('cam1', '阳光小学 后厨', 'sunny'),
      ...camera('cam2', '阳光小学 备餐间', 'sunny'),
      ...camera('cam3', '红星幼儿园 厨房', 'redstar'),
    ].join('\n');
    const configPath = path.join(tmp, 'mingchu.toml');
    fs.writeFileSync(configPath, config, { mode: 0o600 });
    for (const [role, name, sites] of ACCOUNTS) {
      const added = spawnSync(path.join(BIN_DIR, 'mingchu'), ['--config', configPath, 'user', 'add', '--role', role, '--sites', sites, '--password-stdin', name], {
        input: `${pw(name)}\n`,
        encoding: 'utf8',
      });
      assert.equal(added.status, 0, `mingchu user add ${name}: ${added.stderr}`);
    }
    gw = await startProc('mingchu', path.join(BIN_DIR, 'mingchu'), ['--config', configPath], {
      ready: 'mingchu listening on',
      cwd: tmp,
      env: { RUST_LOG: process.env.MINGCHU_LOG || 'info,str0m=warn', NO_COLOR: '1' },
      timeoutMs: 60_000,
    });
    base = gw.ready.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)?.[1];
    assert.ok(base, `mingchu printed its address: ${gw.ready}`);
    await waitFor('every camera online', async () => {
      const cams = await api('/api/cameras');
      return { ok: cams.length === 3 && cams.every((c) => c.state === 'online'), states: cams.map((c) => c.state) };
    }, 30_000);

    // Chromium's profile and Playwright's artifacts go under tmp too (os.tmpdir() reads TMPDIR).
    process.env.TMPDIR = tmp;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--autoplay-policy=no-user-gesture-required',
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
    removeTempDir();
  });

  // ------------------------------------------------------------ flows without events first

  test('share: a parent watches live with no login; a revoked link stops within 5 s', async () => {
    const link = await api('/api/shares', { method: 'POST', body: { site: 'sunny', label: '三年级二班家长群' } });
    const context = await newContext(PHONE);
    const page = await newPage(context, 'share');
    try {
      await withDiagnostics(page, async () => {
        await page.goto(`${base}${link.path}`);
        await plays(page, 'video[data-camera="cam1"]');
        await plays(page, 'video[data-camera="cam2"]');
        assert.match(await page.locator('#site').textContent(), /阳光小学食堂/);
        assert.match(await page.locator('#label').textContent(), /三年级二班家长群/);
        assert.equal(await page.locator('video').count(), 2, 'the site’s two cameras, no other');
        await check(page, 'share-phone');
        // No login, and the link opens no API. (The 401 is logged by the browser; the
        // console was checked above.)
        assert.equal(await page.evaluate(async () => (await fetch('/api/cameras')).status), 401);
        const revoked = Date.now();
        await api(`/api/shares/${link.id}`, { method: 'DELETE' });
        await page.locator('.hint', { hasText: '已停用' }).waitFor({ timeout: 5_000 });
        assert.equal(await page.locator('video').count(), 0, 'no player left');
        assert.ok(Date.now() - revoked < 5_000);
        await page.screenshot({ path: path.join(SHOT_DIR, 'share-revoked.png') });
      });
    } finally {
      await context.close();
    }
  });

  test('patrol moves on by itself', async () => {
    const context = await newContext(PHONE);
    const page = await newPage(context, 'patrol');
    try {
      await withDiagnostics(page, async () => {
        await logIn(page, 'wang');
        await page.goto(`${base}/patrol?every=3&n=1`);
        const progress = page.locator('#patrol-progress');
        await progress.filter({ hasText: '/ 3' }).waitFor({ timeout: 10_000 });
        const first = await progress.textContent();
        await plays(page, '.tile video');
        await check(page, 'patrol-phone');
        await page.waitForFunction((was) => document.querySelector('#patrol-progress')?.textContent !== was, first, { timeout: 8_000, polling: 200 });
        const second = await progress.textContent();
        assert.notEqual(second, first);
        // Paused, it stays.
        await page.locator('#patrol-pause').click();
        await page.waitForTimeout(4_000);
        assert.equal(await progress.textContent(), second, 'paused');
        assert.deepEqual(page.__problems, []);
      });
    } finally {
      await context.close();
    }
  });

  // ------------------------------------------------------------ flows on events

  test('events appear from the kitchen scene', async () => {
    await withDiagnostics(null, async () => {
      await waitFor('two events of site sunny with their clips', async () => {
        const ready = await readyEvents(['sunny']);
        return { ok: ready.length >= 2, ready: ready.length };
      }, 150_000, 1_000);
    });
  });

  async function regulatorFlow(device, name, confirm) {
    const [target] = await readyEvents(['sunny']);
    assert.ok(target, 'an event to review');
    const context = await newContext(device);
    const page = await newPage(context, `regulator-${name}`);
    try {
      await withDiagnostics(page, async () => {
        await logIn(page, 'wang');
        await page.locator('a[data-site="sunny"]').waitFor();
        await page.locator('a[data-site="redstar"]').waitFor();
        await check(page, `regulator-sites-${name}`);
        await page.locator('a[data-site="sunny"]').click();
        await page.waitForURL(/\/sites\/sunny$/);
        await plays(page, 'video[data-camera="cam1"]');
        await check(page, `regulator-site-${name}`);
        await page.getByRole('link', { name: '事件' }).or(page.locator('.van-tabbar-item', { hasText: '事件' })).first().click();
        await page.waitForURL(/\/events$/);
        const item = page.locator(`article[data-event="${target.id}"]`);
        await item.waitFor({ timeout: 10_000 });
        await check(page, `regulator-events-${name}`);
        await item.locator('a').click();
        await page.waitForURL(new RegExp(`/events/${target.id}$`));
        const clip = page.locator('#event-clip');
        await clip.waitFor();
        await page.evaluate(() => document.querySelector('#event-clip').play());
        await plays(page, '#event-clip');
        await page.evaluate(() => document.querySelector('#event-clip').pause());
        await check(page, `regulator-event-${name}`);
        if (!confirm) return;
        await page.locator('#event-note textarea, textarea#event-note').first().fill('已核实：后厨出现违规');
        await page.locator('button[data-action="confirmed"]').click();
        await page.locator('#event-status[data-status="confirmed"]').waitFor({ timeout: 5_000 });
        await page.locator('.van-step', { hasText: '已核实：后厨出现违规' }).waitFor();
        await page.screenshot({ path: path.join(SHOT_DIR, `regulator-confirmed-${name}.png`) });
        assert.deepEqual(page.__problems, [], 'console after the review');
        const audit = await api('/api/audit?action=event_review');
        assert.ok(audit.some((a) => a.target === `event:${target.id}` && a.actor === 'user:wang'), `event_review in the audit trail: ${JSON.stringify(audit.slice(0, 3))}`);
      });
    } finally {
      await context.close();
    }
  }

  test('regulator on a phone: sites → live → events → clip → confirm', () => regulatorFlow(PHONE, 'phone', true));
  test('regulator on a desktop', () => regulatorFlow(DESKTOP, 'desktop', false));

  test('admin: every other page loads, passes axe-core and logs nothing', async () => {
    const context = await newContext(PHONE);
    const page = await newPage(context, 'admin');
    try {
      await withDiagnostics(page, async () => {
        await logIn(page, 'admin');
        for (const p of ['/stats', '/me', '/admin/sites', '/admin/cameras', '/admin/zones', '/admin/rules', '/admin/users', '/admin/tokens', '/admin/shares', '/admin/audit', '/admin/system']) {
          await page.goto(`${base}${p}`);
          await page.locator('.van-nav-bar__title').waitFor();
          // Settled: no loading indicator left.
          await page.waitForFunction(() => !document.querySelector('.state-view [role="status"], .van-list__loading'), null, { timeout: 10_000, polling: 100 });
          await page.waitForTimeout(300);
          await check(page, `admin${p.replaceAll('/', '-')}`);
        }
        // English, kept across a reload.
        await page.goto(`${base}/me`);
        await page.locator('button[lang="en"]').click();
        await page.reload();
        await page.locator('.van-nav-bar__title', { hasText: 'Me' }).waitFor();
        await check(page, 'admin-me-english');
      });
    } finally {
      await context.close();
    }
  });

  test('operator sees only their site and marks an event rectified', async () => {
    const [target] = await readyEvents(['sunny']);
    assert.ok(target, 'an event to rectify');
    const context = await newContext(PHONE);
    const page = await newPage(context, 'operator');
    try {
      await withDiagnostics(page, async () => {
        await logIn(page, 'zhao');
        await page.locator('a[data-site="sunny"]').waitFor();
        assert.equal(await page.locator('a[data-site]').count(), 1, 'one site');
        assert.equal(await page.locator('.van-tabbar-item', { hasText: '管理' }).count(), 0, 'no admin menu');
        await check(page, 'operator-sites');
        await page.goto(`${base}/events`);
        await page.locator('article[data-event]').first().waitFor();
        assert.equal(await page.locator('article[data-event]', { hasText: '红星幼儿园' }).count(), 0, 'no other site’s events');
        await check(page, 'operator-events');
        await page.goto(`${base}/events/${target.id}`);
        await page.locator('button[data-action="rectified"]').waitFor();
        assert.equal(await page.locator('button[data-action="confirmed"]').count(), 0, 'an operator does not confirm');
        await check(page, 'operator-event');
        await page.locator('#event-note textarea, textarea#event-note').first().fill('已驱赶并清洁消毒');
        await page.locator('button[data-action="rectified"]').click();
        await page.locator('#event-status[data-status="rectified"]').waitFor({ timeout: 5_000 });
        await page.screenshot({ path: path.join(SHOT_DIR, 'operator-rectified.png') });
        assert.deepEqual(page.__problems, []);
        const ev = await api(`/api/events/${target.id}`);
        assert.equal(ev.status, 'rectified');
        // Another site's event does not exist for this operator.
        const other = (await api('/api/events?limit=200')).find((e) => e.site === 'redstar');
        if (other) {
          const status = await page.evaluate(async (id) => (await fetch(`/api/events/${id}`)).status, other.id);
          assert.equal(status, 404);
        }
      });
    } finally {
      await context.close();
    }
  });
});
