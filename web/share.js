// The parents' page: a share link's cameras live, and nothing else. The token in the
// address is the only key; no account, no cookie.
import { cameraTile } from '/tile.js';

const base = location.pathname.replace(/\/+$/, '');
const grid = document.getElementById('grid');
const players = [];
const labels = { connecting: '连接中', live: '直播中', reconnecting: '重新连接中', error: '连接失败' };

function hint(text) {
  for (const p of players.splice(0)) p.stop();
  grid.innerHTML = '';
  const p = document.createElement('p');
  p.className = 'hint';
  p.textContent = text;
  grid.append(p);
}

function when(ms) {
  return new Date(ms).toLocaleString('zh-CN', { weekday: 'long', month: 'long', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

async function load() {
  let resp;
  try { resp = await fetch(`${base}/info`, { cache: 'no-store' }); } catch (_) { return hint('网络不可用，请稍后再试。'); }
  if (resp.status === 404) return hint('链接无效。请向学校索取新的观看链接。');
  const info = await resp.json();
  if (info.site) document.getElementById('site').textContent = `${info.site} · 厨房直播`;
  document.getElementById('label').textContent = info.label || '';
  const a = info.availability || {};
  if (a.state === 'expired') return hint('此观看链接已过期。请向学校索取新的链接。');
  if (a.state === 'revoked') return hint('此观看链接已停用。');
  if (a.state === 'closed') {
    hint(a.next_ms ? `现在不在开放时间。下次开放：${when(a.next_ms)}。` : '现在不在开放时间。');
    return setTimeout(load, 60_000);
  }
  if (players.length) return;
  grid.innerHTML = '';
  for (const cam of info.cameras) {
    const url = new URL(`${base}/cameras/${encodeURIComponent(cam.id)}/whep`, location.href).toString();
    players.push(cameraTile(grid, cam, url, (s) => labels[s] || s));
  }
}

// A link revoked or past its hours while watching: the gateway ends the view; the page
// asks again and says why.
setInterval(() => { if (players.length) fetch(`${base}/info`, { cache: 'no-store' }).then((r) => r.json()).then((i) => { if (i.availability?.state !== 'open') { for (const p of players.splice(0)) p.stop(); load(); } }).catch(() => {}); }, 10_000);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') for (const p of players) if (p.pc?.connectionState !== 'connected') p.connect();
});
window.addEventListener('pagehide', () => { for (const p of players) p.stop(); });
load();
