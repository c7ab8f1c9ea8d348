// The live page: a WHEP player per camera, the violations list and the review dialog.
import { cameraTile } from '/tile.js';

const grid = document.getElementById('grid');
const loginForm = document.getElementById('login');
const whoami = document.getElementById('whoami');
const logoutButton = document.getElementById('logout');
const players = [];
const roleNames = { admin: '管理员 admin', regulator: '监管 regulator', reviewer: '审核 reviewer', operator: '厨房 operator' };

function hint(text) {
  grid.innerHTML = '';
  const p = document.createElement('p');
  p.className = 'hint';
  p.textContent = text;
  grid.append(p);
}

function loggedIn(me) {
  loginForm.hidden = true;
  whoami.hidden = false;
  logoutButton.hidden = false;
  whoami.textContent = `${me.who.name || me.who.kind} · ${roleNames[me.role] || me.role}`;
  show();
}

function loggedOut(message) {
  for (const p of players.splice(0)) p.stop();
  if (feed) { feed.close(); feed = null; }
  loginForm.hidden = false;
  whoami.hidden = true;
  logoutButton.hidden = true;
  document.getElementById('events').hidden = true;
  hint(message || '请登录以查看摄像头。Log in to watch the cameras.');
}

loginForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const resp = await fetch('/api/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: document.getElementById('name').value.trim(), password: document.getElementById('password').value }),
  });
  document.getElementById('password').value = '';
  if (resp.ok) return loggedIn(await resp.json());
  if (resp.status === 429) return loggedOut(`尝试过多，请 ${resp.headers.get('Retry-After')} 秒后再试。Too many tries; wait ${resp.headers.get('Retry-After')} s.`);
  loggedOut(resp.status === 401 ? '账号或密码错误。Wrong account or password.' : `HTTP ${resp.status}`);
});

logoutButton.addEventListener('click', async () => {
  await fetch('/api/session', { method: 'DELETE' }).catch(() => {});
  loggedOut();
});

const labels = { connecting: '连接中 connecting', live: '直播 live', reconnecting: '重连中 reconnecting', error: '错误 error' };

async function show() {
  for (const p of players.splice(0)) await p.stop();
  const resp = await fetch('/api/cameras');
  if (resp.status === 401) return loggedOut('登录已过期，请重新登录。Your session has ended; log in again.');
  if (!resp.ok) return hint(`HTTP ${resp.status}`);
  const cameras = await resp.json();
  grid.innerHTML = '';
  for (const cam of cameras) {
    const url = new URL(cam.whep, location.href).toString();
    players.push(cameraTile(grid, cam, url, (s, detail) => (labels[s] || s) + (detail ? `: ${detail}` : '')));
  }
  showEvents(cameras);
}

const ruleNames = { animal_in_kitchen: '动物出没 Animal', phone_use: '玩手机 Phone use', person_in_kitchen: '人员 Person',
  no_chef_hat: '未戴厨师帽 No chef hat', no_mask: '未戴口罩 No mask', smoking: '吸烟 Smoking', after_hours: '非工作时间有人 After hours' };
const statusNames = { new: '待审 new', confirmed: '已确认 confirmed', rectified: '已整改 rectified', dismissed: '误报 dismissed', closed: '已关闭 closed' };
const eventItems = new Map();
let feed = null;
let cameraNames = {};

function renderEvent(ev) {
  let li = eventItems.get(ev.id);
  if (!li) {
    li = document.createElement('li');
    eventItems.set(ev.id, li);
    document.getElementById('event-list').prepend(li);
    li.addEventListener('click', () => openReview(li.event));
  }
  li.event = ev;
  li.innerHTML = '';
  const img = document.createElement('img');
  img.alt = '';
  if (ev.has_snapshot) img.src = `/api/events/${ev.id}/snapshot.jpg`;
  const text = document.createElement('div');
  const title = document.createElement('div');
  title.className = `sev-${ev.severity}`;
  title.textContent = ruleNames[ev.rule] || ev.rule;
  const badge = document.createElement('span');
  badge.className = 'badge';
  badge.textContent = statusNames[ev.status] || ev.status;
  title.append(badge);
  const meta = document.createElement('small');
  meta.textContent = `${cameraNames[ev.camera] || ev.camera} · ${new Date(ev.start_ms).toLocaleString()} · ${Math.round(ev.peak_confidence * 100)}%`;
  text.append(title, meta);
  li.append(img, text);
}

function openReview(ev) {
  const dlg = document.getElementById('review');
  dlg.dataset.id = ev.id;
  document.getElementById('review-title').textContent = `${ruleNames[ev.rule] || ev.rule} · ${cameraNames[ev.camera] || ev.camera}`;
  const clip = document.getElementById('review-clip');
  clip.poster = ev.has_snapshot ? `/api/events/${ev.id}/snapshot.jpg` : '';
  clip.src = ev.clip_state === 'ready' ? `/api/events/${ev.id}/clip.mp4` : '';
  document.getElementById('review-meta').textContent = ev.clip_state === 'ready' ? '' : '录像生成中 The clip is being recorded…';
  document.getElementById('review-note').value = ev.note || '';
  dlg.showModal();
}

async function review(status) {
  const dlg = document.getElementById('review');
  const resp = await fetch(`/api/events/${dlg.dataset.id}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ status, note: document.getElementById('review-note').value }),
  });
  if (resp.ok) renderEvent(await resp.json());
  else document.getElementById('review-meta').textContent = ((await resp.json().catch(() => ({}))).error) || `HTTP ${resp.status}`;
  if (resp.ok) dlg.close();
}

for (const b of document.querySelectorAll('#review [data-status]')) b.addEventListener('click', () => review(b.dataset.status));
document.getElementById('review-close').addEventListener('click', () => document.getElementById('review').close());

async function showEvents(cameras) {
  cameraNames = Object.fromEntries(cameras.map((c) => [c.id, c.name]));
  const resp = await fetch('/api/events?limit=50');
  if (!resp.ok) return;
  document.getElementById('events').hidden = false;
  for (const ev of (await resp.json()).reverse()) renderEvent(ev);
  if (feed) feed.close();
  feed = new EventSource('/api/events/stream');
  feed.addEventListener('event', (m) => renderEvent(JSON.parse(m.data)));
}

// A phone that slept or switched networks: reconnect when the page is shown again.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') for (const p of players) if (p.pc?.connectionState !== 'connected') p.connect();
});
window.addEventListener('pagehide', () => { for (const p of players) p.stop(); });
// Already logged in (the session cookie is still good): go straight to the cameras.
fetch('/api/me').then(async (r) => { if (r.ok) loggedIn(await r.json()); }).catch(() => {});
