// Formatting and small helpers the pages share.
import { ApiError } from '@/api/client';
import { i18n } from '@/i18n';

const t = (k: string, v?: Record<string, unknown>) => i18n.global.t(k, v ?? {});

/** A UNIX ms time in the site's time zone. */
export function fmtTime(ms: number | null | undefined, tz?: string, withDate = true): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const opts: Intl.DateTimeFormatOptions = { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false };
  if (withDate) Object.assign(opts, { year: 'numeric', month: '2-digit', day: '2-digit' });
  try {
    return new Intl.DateTimeFormat(i18n.global.locale.value, { ...opts, timeZone: tz || 'Asia/Shanghai' }).format(ms);
  } catch {
    return new Intl.DateTimeFormat(i18n.global.locale.value, opts).format(ms);
  }
}

export function fmtDuration(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  const n = Math.round(s);
  if (n >= 86400) return `${t('time.d', { n: Math.floor(n / 86400) })} ${t('time.h', { n: Math.floor((n % 86400) / 3600) })}`;
  if (n >= 3600) return `${t('time.h', { n: Math.floor(n / 3600) })} ${t('time.m', { n: Math.floor((n % 3600) / 60) })}`;
  if (n >= 60) return `${t('time.m', { n: Math.floor(n / 60) })} ${t('time.s', { n: n % 60 })}`;
  return t('time.s', { n });
}

export function fmtBytes(b: number | null | undefined): string {
  if (b === null || b === undefined || !Number.isFinite(b)) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = b;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function pct(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : `${Math.round(x * 100)}%`;
}

export function num(x: number | null | undefined, digits = 0): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits);
}

/** What to tell a person about a failed call. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    switch (e.kind) {
      case 'rate_limited':
        return e.retryAfter ? t('errors.rate_limited', { s: e.retryAfter }) : t('errors.rate_limited_plain');
      case 'bad_request':
      case 'unavailable':
      case 'server':
        return t(`errors.${e.kind}`, { msg: e.message });
      default:
        return t(`errors.${e.kind}`);
    }
  }
  return e instanceof Error ? e.message : String(e);
}

/** A rule id's name for people, or the id itself. */
export function ruleName(rule: string): string {
  const key = `rules.${rule}`;
  return i18n.global.te(key) ? t(key) : rule;
}

export function statusName(s: string): string {
  const key = `status.${s}`;
  return i18n.global.te(key) ? t(key) : s;
}

export function severityName(s: string): string {
  const key = `severity.${s}`;
  return i18n.global.te(key) ? t(key) : s;
}

export const statusTag: Record<string, 'primary' | 'success' | 'danger' | 'warning' | 'default'> = {
  new: 'danger',
  confirmed: 'warning',
  rectified: 'primary',
  dismissed: 'default',
  closed: 'success',
};

export function actorName(a: string): string {
  return a.replace(/^user:/, '').replace(/^token:/, '🔑 ');
}

/** Local midnight, `daysAgo` days back, as UNIX ms. */
export function dayStart(daysAgo = 0): number {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  d.setDate(d.getDate() - daysAgo);
  return d.getTime();
}

export function loadSetting<T>(key: string, fallback: T): T {
  try {
    const v = localStorage.getItem(`mingchu.${key}`);
    return v === null ? fallback : (JSON.parse(v) as T);
  } catch {
    return fallback;
  }
}

export function saveSetting(key: string, value: unknown) {
  try {
    localStorage.setItem(`mingchu.${key}`, JSON.stringify(value));
  } catch {
    // Not kept across reloads; fine.
  }
}
