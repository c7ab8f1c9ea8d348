// Every call to the gateway goes through here, so each page gets one typed error to show
// (and a 401 anywhere sends the browser back to the login).

export type ErrorKind =
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'no_route'
  | 'conflict'
  | 'rate_limited'
  | 'bad_request'
  | 'unavailable'
  | 'server'
  | 'network';

export class ApiError extends Error {
  constructor(
    readonly kind: ErrorKind,
    readonly status: number,
    message: string,
    /** Seconds, from `Retry-After` on a 429 or 503. */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The endpoint is not on this gateway (an older version): a page says "not available". */
  get missingRoute(): boolean {
    return this.kind === 'no_route';
  }
}

function kindOf(status: number, message: string): ErrorKind {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return /no such API route/i.test(message) ? 'no_route' : 'not_found';
  // 405 on a path that exists for other methods: this gateway lacks that operation.
  if (status === 405) return 'no_route';
  if (status === 409) return 'conflict';
  if (status === 429) return 'rate_limited';
  if (status === 400 || status === 413 || status === 415 || status === 422) return 'bad_request';
  if (status === 503) return 'unavailable';
  return 'server';
}

type Unauthorized = () => void;
let onUnauthorized: Unauthorized = () => {};

/** Called on any 401 (the session ended); the app sends the browser to the login. */
export function setUnauthorizedHandler(f: Unauthorized) {
  onUnauthorized = f;
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}${path.includes('?') ? '&' : '?'}${s}` : path;
}

interface Options {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  body?: unknown;
  query?: Query;
  /** A 401 here is an answer (the login form), not an ended session. */
  quiet401?: boolean;
  signal?: AbortSignal;
}

export async function api<T>(path: string, opts: Options = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let resp: Response;
  try {
    resp = await fetch(withQuery(path, opts.query), {
      method: opts.method || 'GET',
      headers,
      body,
      credentials: 'same-origin',
      cache: 'no-store',
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError('network', 0, e instanceof Error ? e.message : String(e));
  }
  const text = await resp.text();
  if (!resp.ok) {
    let message = `HTTP ${resp.status}`;
    try {
      message = (JSON.parse(text) as { error?: string }).error || message;
    } catch {
      // Not JSON: keep the status.
    }
    const retry = resp.headers.get('Retry-After');
    const err = new ApiError(kindOf(resp.status, message), resp.status, message, retry ? Number(retry) || null : null);
    if (err.kind === 'unauthorized' && !opts.quiet401) onUnauthorized();
    throw err;
  }
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as T;
  }
}
