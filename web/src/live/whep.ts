// A WHEP player: POST an SDP offer, apply the answer, DELETE the session on leave.
// It reconnects by itself (with back-off) when the network blips or the phone wakes up.
// On the gateway's own pages the session cookie authenticates; elsewhere pass a bearer
// `token`. Shared by the dashboard and the parents' share page.

export type PlayerState = 'connecting' | 'live' | 'reconnecting' | 'error' | 'stopped';

export interface WhepOptions {
  url: string;
  token?: string;
  onState?: (state: PlayerState, detail?: string) => void;
  /** Asked before each retry; answering false stops the player (e.g. a revoked link). */
  shouldRetry?: (status: number | null) => boolean | Promise<boolean>;
}

/** An HTTP answer other than 201 to the offer. */
export class WhepError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
  }
}

const MIN_RETRY_MS = 1_000;
const MAX_RETRY_MS = 15_000;

export class WhepPlayer {
  private pc: RTCPeerConnection | null = null;
  private location: string | null = null;
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private retryMs = MIN_RETRY_MS;
  private iceServers: RTCIceServer[] = [];
  private lastStatus: number | null = null;
  state: PlayerState = 'connecting';

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly opts: WhepOptions,
  ) {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  /** Whether the peer connection is up. */
  get connected(): boolean {
    return this.pc?.connectionState === 'connected';
  }

  private setState(s: PlayerState, detail?: string) {
    this.state = s;
    this.opts.onState?.(s, detail);
  }

  async connect(): Promise<void> {
    clearTimeout(this.retryTimer);
    await this.teardown();
    if (this.stopped) return;
    this.setState('connecting');
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = (ev) => {
      this.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      this.video.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      const s = pc.connectionState;
      if (s === 'connected') {
        this.retryMs = MIN_RETRY_MS;
        this.lastStatus = null;
        this.setState('live');
      }
      if (s === 'failed' || s === 'disconnected' || s === 'closed') this.scheduleRetry();
    };
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const resp = await fetch(this.opts.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', ...this.auth() },
        body: offer.sdp,
      });
      if (resp.status !== 201) {
        let reason = `HTTP ${resp.status}`;
        try {
          reason = ((await resp.json()) as { error?: string }).error || reason;
        } catch {
          // Not JSON: the status says enough.
        }
        throw new WhepError(reason, resp.status);
      }
      const loc = resp.headers.get('Location');
      if (loc) this.location = new URL(loc, new URL(this.opts.url, location.href)).toString();
      const links = resp.headers.get('Link');
      if (links) this.iceServers = parseIceLinks(links);
      const answer = await resp.text();
      if (pc !== this.pc) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (e) {
      if (pc !== this.pc || this.stopped) return;
      this.lastStatus = e instanceof WhepError ? e.status : null;
      this.setState('error', e instanceof Error ? e.message : String(e));
      this.scheduleRetry();
    }
  }

  private auth(): Record<string, string> {
    return this.opts.token ? { Authorization: `Bearer ${this.opts.token}` } : {};
  }

  private scheduleRetry() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    if (this.state !== 'error') this.setState('reconnecting');
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    const status = this.lastStatus;
    this.retryTimer = setTimeout(async () => {
      if (this.opts.shouldRetry && !(await this.opts.shouldRetry(status))) {
        await this.stop();
        return;
      }
      void this.connect();
    }, wait);
  }

  private async teardown() {
    // DELETE first, and close the peer connection once the gateway has answered: closed
    // first, its DTLS close alert would end the session on the gateway before the DELETE
    // arrives, and the DELETE would then find nothing (a 404 in the console).
    const pc = this.pc;
    this.pc = null;
    if (pc) {
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
    }
    if (this.location) {
      const loc = this.location;
      this.location = null;
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 2_000);
      // keepalive: the DELETE still goes out when the page is closing.
      await fetch(loc, { method: 'DELETE', headers: this.auth(), keepalive: true, signal: abort.signal }).catch(() => {});
      clearTimeout(timer);
    }
    pc?.close();
  }

  /** Stops without the DELETE: the gateway already ended the view (a revoked link), and
   * asking it to end a session it no longer has would only earn a 404. */
  async forget(): Promise<void> {
    this.location = null;
    await this.stop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.teardown();
    this.video.srcObject = null;
    this.setState('stopped');
  }
}

/** STUN/TURN servers from the answer's `Link: <…>; rel="ice-server"` headers. */
export function parseIceLinks(header: string): RTCIceServer[] {
  const servers: RTCIceServer[] = [];
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = part.match(/<([^>]+)>/);
    if (!m || !/rel="ice-server"/.test(part)) continue;
    const s: RTCIceServer = { urls: m[1] };
    const u = part.match(/username="([^"]*)"/);
    const c = part.match(/credential="([^"]*)"/);
    if (u) s.username = u[1];
    if (c) s.credential = c[1];
    servers.push(s);
  }
  return servers;
}
