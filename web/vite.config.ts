// Two pages from one build: the dashboard (index.html) and the parents' share page
// (share.html), both served by the gateway from web/dist under the page CSP
// `script-src 'self'; style-src 'self'` — so nothing inline, no eval, absolute /assets/ URLs.
import { fileURLToPath, URL } from 'node:url';
import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';
import Components from 'unplugin-vue-components/vite';
import { VantResolver } from '@vant/auto-import-resolver';
import fs from 'node:fs';
import path from 'node:path';
import type { Plugin } from 'vite';

const port = process.env.MINGCHU_PORT || '8080';
const gateway = `http://127.0.0.1:${port}`;
const src = (p: string) => fileURLToPath(new URL(`./src/${p}`, import.meta.url));

// Vant's icon font comes as a base64 `data:` URL (which `default-src 'self'` refuses for
// fonts) with a fallback on a CDN (which we never load). Write it out as a file of its
// own, so it is served from /assets/ like everything else and cached by its hash.
function vantIconFont(): Plugin {
  const out = fileURLToPath(new URL('./node_modules/.cache/mingchu/vant-icon.woff2', import.meta.url));
  return {
    name: 'mingchu-vant-icon-font',
    enforce: 'pre',
    transform(code, id) {
      if (!/vant\/es\/icon\/index\.css$/.test(id.split('?')[0])) return null;
      const m = code.match(/src:url\(data:font\/woff2;charset=utf-8;base64,([A-Za-z0-9+/=]+)\) format\("woff2"\)(,url\([^)]*\) format\("woff"\))?/);
      if (!m) this.error('the Vant icon font is no longer a data URL; check this plugin');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      fs.writeFileSync(out, Buffer.from(m[1], 'base64'));
      const rel = path.relative(path.dirname(id), out).split(path.sep).join('/');
      return { code: code.replace(m[0], `src:url("${rel}") format("woff2")`), map: null };
    },
  };
}

export default defineConfig({
  // The HTML entries live in src/ so that dist/ gets index.html and share.html at its top.
  root: src(''),
  base: '/',
  publicDir: false,
  plugins: [
    vantIconFont(),
    vue(),
    // Only the Vant components a template uses are bundled, each with its own CSS.
    Components({ resolvers: [VantResolver()], dts: fileURLToPath(new URL('./src/components.d.ts', import.meta.url)) }),
  ],
  resolve: { alias: { '@': src('') } },
  define: {
    // vue-i18n: Composition API only, no devtools hooks; messages are compiled to ASTs
    // without `new Function`, which the CSP would refuse.
    __VUE_I18N_FULL_INSTALL__: false,
    __VUE_I18N_LEGACY_API__: false,
    __INTLIFY_PROD_DEVTOOLS__: false,
    __INTLIFY_JIT_COMPILATION__: true,
    __INTLIFY_DROP_MESSAGE_COMPILER__: false,
    __VUE_OPTIONS_API__: false,
    __VUE_PROD_DEVTOOLS__: false,
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: false,
  },
  build: {
    outDir: fileURLToPath(new URL('./dist', import.meta.url)),
    emptyOutDir: true,
    // The polyfill would be an inline script, which the CSP refuses.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 700,
    rolldownOptions: {
      input: { index: src('index.html'), share: src('share.html') },
    },
  },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/api': { target: gateway, changeOrigin: false },
      '/s/': { target: gateway, changeOrigin: false },
      '/metrics': { target: gateway, changeOrigin: false },
    },
  },
});
