// Who is logged in, and what their role lets the pages show.
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import { api } from '@/api/client';
import type { Me, Role } from '@/api/types';

// Whether this browser logged in last time. The cookie is HttpOnly (unreadable here), so
// without this hint every visit would first ask /api/me and get a 401 before the login.
const HINT = 'mingchu.loggedIn';
function hint(on: boolean) {
  try {
    if (on) localStorage.setItem(HINT, '1');
    else localStorage.removeItem(HINT);
  } catch {
    // No storage: /api/me is asked each time.
  }
}
function hinted(): boolean {
  try {
    return localStorage.getItem(HINT) !== null;
  } catch {
    return true;
  }
}

export const useSession = defineStore('session', () => {
  const me = ref<Me | null>(null);
  /** Whether GET /api/me has answered once (the router waits for it). */
  const checked = ref(false);

  const role = computed<Role | null>(() => me.value?.role ?? null);
  const name = computed(() => {
    const w = me.value?.who;
    if (!w) return '';
    return 'name' in w ? w.name : w.kind;
  });
  const isAdmin = computed(() => role.value === 'admin');
  /** Confirm, dismiss, close (README: reviewer, regulator, admin). */
  const canReview = computed(() => role.value === 'admin' || role.value === 'regulator' || role.value === 'reviewer');
  /** Mark rectified (operator, admin). */
  const canRectify = computed(() => role.value === 'admin' || role.value === 'operator');
  const canShare = computed(() => role.value === 'admin' || role.value === 'regulator');
  const canAudit = canShare;
  const isAccount = computed(() => me.value?.who.kind === 'user');

  async function load(): Promise<Me | null> {
    if (!hinted()) {
      checked.value = true;
      return null;
    }
    try {
      me.value = await api<Me>('/api/me', { quiet401: true });
    } catch {
      me.value = null;
    }
    hint(!!me.value);
    checked.value = true;
    return me.value;
  }

  async function login(name: string, password: string): Promise<Me> {
    me.value = await api<Me>('/api/session', { method: 'POST', body: { name, password }, quiet401: true });
    checked.value = true;
    hint(true);
    return me.value;
  }

  async function logout() {
    try {
      await api('/api/session', { method: 'DELETE', quiet401: true });
    } finally {
      me.value = null;
      hint(false);
    }
  }

  function ended() {
    me.value = null;
    hint(false);
  }

  return { me, checked, role, name, isAdmin, canReview, canRectify, canShare, canAudit, isAccount, load, login, logout, ended };
});
