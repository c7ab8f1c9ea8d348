// First-load bytes of each page: the HTML plus every script, stylesheet and static import
// it loads before the first paint, each gzipped at level 9 (as a gateway or proxy would).
//   node scripts/size.mjs            prints the figures
//   node scripts/size.mjs --check    also fails when share.html is over its 150 KB budget
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const BUDGET = { 'share.html': 150 * 1024 };

const gz = (file) => zlib.gzipSync(fs.readFileSync(file), { level: 9 }).length;

// The dashboard paints its first screen (the login) once the router has loaded that
// page's chunk, so it counts too.
const ROUTE_CHUNKS = { 'index.html': ['LoginPage'] };

function firstLoad(page) {
  const html = fs.readFileSync(path.join(dist, page), 'utf8');
  const seen = new Set();
  const queue = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
  const assets = fs.readdirSync(path.join(dist, 'assets'));
  for (const chunk of ROUTE_CHUNKS[page] || []) {
    for (const f of assets) if (f.startsWith(`${chunk}-`) && /\.(js|css)$/.test(f)) queue.push(`/assets/${f}`);
  }
  while (queue.length) {
    const url = queue.shift();
    if (seen.has(url)) continue;
    seen.add(url);
    if (!url.endsWith('.js')) continue;
    // Static imports only: `import … from "./x.js"` / `import "./x.js"`; dynamic import() is lazy.
    const js = fs.readFileSync(path.join(dist, url), 'utf8');
    for (const m of js.matchAll(/(?:^|[;\s}])import\s*(?:[\w$*{}\s,]+from\s*)?["'](\.{1,2}\/[^"']+|\/assets\/[^"']+)["']/g)) {
      queue.push(path.posix.join(path.posix.dirname(url), m[1]));
    }
  }
  const files = [page, ...seen].map((u) => ({ u, raw: fs.statSync(path.join(dist, u)).size, gz: gz(path.join(dist, u)) }));
  return { files, total: files.reduce((a, f) => a + f.gz, 0), raw: files.reduce((a, f) => a + f.raw, 0) };
}

let failed = false;
for (const page of ['index.html', 'share.html']) {
  const { files, total, raw } = firstLoad(page);
  console.log(`${page}: ${total} bytes gzipped (${(total / 1024).toFixed(1)} KiB; ${raw} raw) in ${files.length} files`);
  for (const f of files) console.log(`  ${String(f.gz).padStart(7)}  ${f.u}`);
  if (BUDGET[page] && total > BUDGET[page]) {
    console.log(`  over the budget of ${BUDGET[page]} bytes`);
    failed = true;
  }
  const inline = (fs.readFileSync(path.join(dist, page), 'utf8').match(/<script(?![^>]*\bsrc=)[^>]*>|<style\b/g) || []).length;
  if (inline) {
    console.log(`  ${inline} inline script/style element(s): the CSP refuses them`);
    failed = true;
  }
}
if (process.argv.includes('--check') && failed) process.exit(1);
