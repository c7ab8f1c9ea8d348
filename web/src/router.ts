// HTML5 history routes (the gateway answers index.html for every non-API path). Pages
// load on demand, so the first paint carries only the shell and the page shown.
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router';
import { useSession } from '@/stores/session';

declare module 'vue-router' {
  interface RouteMeta {
    /** Shown without a login. */
    public?: boolean;
    /** Roles that may open the page (default: every role). */
    roles?: string[];
    tab?: string;
  }
}

const adminOnly = ['admin'];
const sharers = ['admin', 'regulator'];

const routes: RouteRecordRaw[] = [
  { path: '/', redirect: '/sites' },
  { path: '/login', component: () => import('@/pages/LoginPage.vue'), meta: { public: true } },
  { path: '/sites', component: () => import('@/pages/SitesPage.vue'), meta: { tab: 'sites' } },
  { path: '/sites/:id', component: () => import('@/pages/SitePage.vue'), meta: { tab: 'sites' }, props: true },
  { path: '/patrol', component: () => import('@/pages/PatrolPage.vue'), meta: { tab: 'patrol' } },
  { path: '/events', component: () => import('@/pages/EventsPage.vue'), meta: { tab: 'events' } },
  { path: '/events/:id', component: () => import('@/pages/EventPage.vue'), meta: { tab: 'events' }, props: true },
  { path: '/stats', component: () => import('@/pages/StatsPage.vue'), meta: { tab: 'stats' } },
  { path: '/me', component: () => import('@/pages/MePage.vue'), meta: { tab: 'me' } },
  { path: '/admin/sites', component: () => import('@/pages/admin/SitesAdmin.vue'), meta: { tab: 'me', roles: adminOnly } },
  { path: '/admin/cameras', component: () => import('@/pages/admin/CamerasAdmin.vue'), meta: { tab: 'me', roles: adminOnly } },
  { path: '/admin/zones', component: () => import('@/pages/admin/ZonesAdmin.vue'), meta: { tab: 'me', roles: adminOnly } },
  { path: '/admin/rules', component: () => import('@/pages/admin/RulesAdmin.vue'), meta: { tab: 'me', roles: adminOnly } },
  { path: '/admin/users', component: () => import('@/pages/admin/UsersAdmin.vue'), meta: { tab: 'me', roles: adminOnly } },
  { path: '/admin/tokens', component: () => import('@/pages/admin/TokensAdmin.vue'), meta: { tab: 'me', roles: adminOnly } },
  { path: '/admin/shares', component: () => import('@/pages/admin/SharesAdmin.vue'), meta: { tab: 'me', roles: sharers } },
  { path: '/admin/audit', component: () => import('@/pages/admin/AuditAdmin.vue'), meta: { tab: 'me', roles: sharers } },
  { path: '/admin/system', component: () => import('@/pages/admin/SystemAdmin.vue'), meta: { tab: 'me', roles: adminOnly } },
  { path: '/:rest(.*)*', redirect: '/sites' },
];

export const router = createRouter({
  history: createWebHistory('/'),
  routes,
  scrollBehavior: (_to, _from, saved) => saved || { top: 0 },
});

router.beforeEach(async (to) => {
  const session = useSession();
  if (!session.checked) await session.load();
  if (to.meta.public) {
    return session.me && to.path === '/login' ? (typeof to.query.next === 'string' ? to.query.next : '/sites') : true;
  }
  if (!session.me) return { path: '/login', query: to.fullPath !== '/sites' ? { next: to.fullPath } : {} };
  if (to.meta.roles && !to.meta.roles.includes(session.me.role)) return '/me';
  return true;
});
