// The gateway's JSON, as README "HTTP API" documents it. Fields the server is still
// gaining are optional, and every page renders "—" when they are absent.

export type Role = 'admin' | 'regulator' | 'reviewer' | 'operator';
export type Scope = '*' | string[];
export type Who =
  | { kind: 'user'; id: number; name: string }
  | { kind: 'token'; id: number; name: string }
  | { kind: 'config_token' }
  | { kind: 'share'; id: number };

export interface Me {
  who: Who;
  role: Role;
  scope: Scope;
  expires_ms: number | null;
}

export type SiteKind = 'school' | 'kindergarten' | 'elderly_care' | 'other';

export interface WeekStats {
  violations?: number;
  camera_days?: number;
  per_camera_day?: number | null;
  reviewed?: number;
  confirmed?: number;
  confirmed_share?: number | null;
}

export interface Site {
  id: string;
  name: string;
  kind: SiteKind;
  address: string;
  district: string;
  contact: string;
  timezone: string;
  cameras: number;
  cameras_online: number;
  open_today?: number;
  last_event?: EventItem | null;
  week?: WeekStats;
  provisioned?: boolean;
  editable?: boolean;
}

export interface Camera {
  id: string;
  name: string;
  site: string;
  state: 'online' | 'offline';
  since_ms: number;
  fps: number;
  bitrate_bps: number;
  reconnects: number;
  last_error: string | null;
  width: number | null;
  height: number | null;
  viewers: number;
  whep: string;
  url?: string;
  enabled?: boolean;
  provisioned?: boolean;
}

export type EventStatus = 'new' | 'confirmed' | 'rectified' | 'dismissed' | 'closed';
export type Severity = 'info' | 'warning' | 'critical';

export interface Transition {
  from: EventStatus;
  to: EventStatus;
  by?: string;
  actor?: string;
  at_ms: number;
  note: string;
}

export interface EventItem {
  id: number;
  camera: string;
  site: string | null;
  rule: string;
  kind: string;
  severity: Severity | string;
  track: number;
  start_ms: number;
  end_ms: number | null;
  peak_confidence: number;
  status: EventStatus;
  note: string;
  has_snapshot: boolean;
  clip_state: 'pending' | 'ready' | 'failed' | string;
  clip_duration_s: number | null;
  history?: Transition[];
}

export interface User {
  id: number;
  name: string;
  role: Role;
  scope: Scope;
  created_ms: number;
  disabled: boolean;
}

export interface Token {
  id: number;
  name: string;
  role: Role;
  scope: Scope;
  created_ms: number;
  created_by: string;
  last_used_ms: number | null;
  revoked_ms: number | null;
  secret?: string;
}

export interface ScheduleEntry {
  days?: string[] | null;
  from: string;
  to: string;
}

export type Availability =
  | { state: 'open' }
  | { state: 'closed'; next_ms: number | null }
  | { state: 'expired' }
  | { state: 'revoked' };

export interface ShareLink {
  id: number;
  site: string;
  cameras: string[];
  label: string;
  created_ms: number;
  created_by: string;
  expires_ms: number;
  schedule: ScheduleEntry[];
  max_viewers: number | null;
  revoked_ms: number | null;
  viewers?: number;
  availability?: Availability;
  path?: string;
  url?: string;
  qr_svg?: string;
  qr_png?: string;
}

export interface AuditEntry {
  id: number;
  at_ms: number;
  actor: string;
  client: string;
  action: string;
  target: string;
  site: string | null;
  detail: string;
  ended_ms: number | null;
}

export type RuleKind = 'presence' | 'missing_attribute' | 'proximity';

export interface Rule {
  id: string;
  kind: RuleKind;
  cameras: string[];
  subject: string;
  object?: string | null;
  zones?: [number, number][][] | null;
  schedule?: ScheduleEntry[] | null;
  timezone: string;
  min_duration_s: number;
  cooldown_s: number;
  end_after_s: number;
  severity: Severity;
  min_score: number;
  min_head_px?: number;
  proximity?: number;
  provisioned?: boolean;
  /** `file` (the config file: read-only), `builtin` (the defaults) or `saved` (changed here). */
  source?: 'file' | 'builtin' | 'saved' | string;
  /** Why the model cannot run it; null when it runs. */
  inactive?: string | null;
}

/** A rule from the config file cannot be changed here. */
export function ruleReadOnly(r: Rule): boolean {
  return r.provisioned === true || r.source === 'file';
}

/** The rule as PUT/POST take it: without what the listing adds. */
export function ruleBody(r: Rule): Omit<Rule, 'provisioned' | 'source' | 'inactive'> {
  const { provisioned: _p, source: _s, inactive: _i, ...body } = r;
  void _p;
  void _s;
  void _i;
  return body;
}

export interface RulesAnswer {
  roles: Record<string, string[]>;
  labels?: string[];
  rules: Rule[];
}

export interface Probe {
  codec?: string;
  width?: number;
  height?: number;
  snapshot?: string;
  error?: string;
}

export interface Stats {
  from_ms: number;
  to_ms: number;
  days: { day: string; total: number; kinds: Record<string, number> }[];
  sites: { site: string; name: string; violations: number; cameras: number; per_camera_day: number | null; confirmed_share: number | null }[];
  review: { reviewed: number; median_s: number | null; p90_s: number | null };
  cameras: { id: string; name: string; site: string; state: string; uptime_share: number | null }[];
}

export interface Health {
  status: string;
  version: string;
  uptime_s: number;
  cameras: number;
  cameras_online: number;
  viewers: number;
  detect: Record<string, unknown>;
}

export interface System extends Partial<Health> {
  data_dir?: string;
  disk_total_bytes?: number;
  disk_free_bytes?: number;
  events_bytes?: number;
  events?: number;
  retention_days?: number | null;
  days_fit?: number | null;
}
