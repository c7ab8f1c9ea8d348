// zh-CN first, English on request; the choice is kept in localStorage.
import { createI18n } from 'vue-i18n';
import zh from './zh-CN';
import en from './en';

export type Locale = 'zh-CN' | 'en';
const KEY = 'mingchu.locale';

function initial(): Locale {
  try {
    const saved = localStorage.getItem(KEY);
    if (saved === 'zh-CN' || saved === 'en') return saved;
  } catch {
    // Storage can be off (private mode): the default it is.
  }
  return 'zh-CN';
}

export const i18n = createI18n({
  legacy: false,
  locale: initial(),
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zh, en },
  missingWarn: false,
  fallbackWarn: false,
});

export function setLocale(l: Locale) {
  i18n.global.locale.value = l;
  document.documentElement.lang = l;
  try {
    localStorage.setItem(KEY, l);
  } catch {
    // Not kept; still switched for this page.
  }
}

document.documentElement.lang = i18n.global.locale.value;
