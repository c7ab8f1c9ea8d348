// Minimal WHEP player: POST an SDP offer, apply the answer, DELETE on leave.
// Reconnects by itself when the network blips or the phone wakes up. On the gateway's own
// pages the session cookie authenticates; elsewhere pass a bearer `token`.
export class WhepPlayer {
  constructor(video, { url, token, onState = () => {} }) {
    this.video = video;
    this.url = url;
    this.token = token;
    this.onState = onState;
    this.pc = null;
    this.location = null;
    this.stopped = false;
    this.retryTimer = null;
  }

  async start() {
    this.stopped = false;
    await this.connect();
  }

  async connect() {
    clearTimeout(this.retryTimer);
    await this.teardown();
    if (this.stopped) return;
    this.onState('connecting');
    const pc = new RTCPeerConnection({ iceServers: this.iceServers || [] });
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (ev) => {
      this.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      this.video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === 'connected') this.onState('live');
      if (s === 'failed' || s === 'disconnected') this.scheduleRetry();
    };
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const resp = await fetch(this.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', ...this.auth() },
        body: offer.sdp,
      });
      if (resp.status !== 201) {
        let reason = `HTTP ${resp.status}`;
        try { reason = (await resp.json()).error || reason; } catch (_) {}
        throw new Error(reason);
      }
      this.location = new URL(resp.headers.get('Location'), this.url).toString();
      const links = resp.headers.get('Link');
      if (links) this.iceServers = parseIceLinks(links);
      await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
    } catch (e) {
      this.onState('error', e.message);
      this.scheduleRetry();
    }
  }

  auth() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  scheduleRetry() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.onState('reconnecting');
    this.retryTimer = setTimeout(() => this.connect(), 2000);
  }

  async teardown() {
    if (this.pc) { this.pc.close(); this.pc = null; }
    if (this.location) {
      const loc = this.location;
      this.location = null;
      fetch(loc, { method: 'DELETE', headers: this.auth(), keepalive: true }).catch(() => {});
    }
  }

  async stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.teardown();
  }
}

function parseIceLinks(header) {
  const servers = [];
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = part.match(/<([^>]+)>/);
    if (!m || !/rel="ice-server"/.test(part)) continue;
    const s = { urls: m[1] };
    const u = part.match(/username="([^"]*)"/);
    const c = part.match(/credential="([^"]*)"/);
    if (u) s.username = u[1];
    if (c) s.credential = c[1];
    servers.push(s);
  }
  return servers;
}
