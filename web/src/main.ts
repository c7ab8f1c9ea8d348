// The dashboard: Vue + Vant (only the components used), vue-router, pinia, vue-i18n.
import { createApp, watch } from 'vue';
import { createPinia } from 'pinia';
import { Locale, showToast } from 'vant';
import enUS from 'vant/es/locale/lang/en-US';
import zhCN from 'vant/es/locale/lang/zh-CN';
import 'vant/es/toast/style';
import 'vant/es/dialog/style';
import 'vant/es/notify/style';
import App from './App.vue';
import { router } from './router';
import { i18n } from './i18n';
import { setUnauthorizedHandler } from './api/client';
import { useSession } from './stores/session';
import './live/tile.css';
import './styles/theme.css';

const app = createApp(App);
const pinia = createPinia();
app.use(pinia).use(i18n).use(router);

// Vant's own words (calendar, dialogs, "loading") follow the chosen language.
watch(
  i18n.global.locale,
  (l) => Locale.use(l === 'en' ? 'en-US' : 'zh-CN', l === 'en' ? enUS : zhCN),
  { immediate: true },
);

// A 401 on any call: the session ended (expired, logged out elsewhere, password changed).
const session = useSession(pinia);
setUnauthorizedHandler(() => {
  if (!session.me) return;
  session.ended();
  showToast(i18n.global.t('login.ended'));
  const here = router.currentRoute.value;
  if (!here.meta.public) void router.push({ path: '/login', query: { next: here.fullPath } });
});

app.mount('#app');
