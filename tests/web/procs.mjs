// Processes for the browser tests: camera-sim and mingchu on port 0 (each prints the
// port it got), killed with this process even if it dies without cleaning up (setpriv
// --pdeathsig), with temp dirs removed by the next run when a run was killed.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const VERBOSE = !!process.env.E2E_VERBOSE;
const children = new Set();
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
let tmpDir = null;

// Never leave a camera-sim, a gateway or a temp dir behind, whatever happens to this process.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true, maxRetries: 2 });
});
process.once('SIGINT', () => process.exit(130));
process.once('SIGTERM', () => process.exit(143));

const TMP_PREFIX = 'mingchu-web-';

/** A fresh temp dir for this run, after removing those of earlier runs whose pid is gone. */
export function makeTempDir() {
  const dir = os.tmpdir();
  for (const name of fs.readdirSync(dir)) {
    const pid = Number(name.startsWith(TMP_PREFIX) && name.slice(TMP_PREFIX.length).split('-')[0]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (e) {
      if (e.code === 'ESRCH') fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    }
  }
  tmpDir = fs.mkdtempSync(path.join(dir, `${TMP_PREFIX}${process.pid}-`));
  return tmpDir;
}

export function removeTempDir() {
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  tmpDir = null;
}

/** Starts `bin` and resolves once a stdout line contains `ready`; that line is kept as `proc.ready`. */
export async function startProc(name, bin, args, { ready, cwd, env = {}, timeoutMs = 30_000 }) {
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} is missing: build the workspace binaries first (cargo build --workspace --bins), or set MINGCHU_BIN_DIR`);
  }
  const [cmd, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', bin, ...args]] : [bin, args];
  const child = spawn(cmd, argv, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const proc = { name, child, log: [] };
  const keep = (line) => {
    proc.log.push(line);
    if (proc.log.length > 300) proc.log.shift();
    if (VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
  };
  createInterface({ input: child.stderr }).on('line', keep);
  const out = createInterface({ input: child.stdout });
  out.on('line', keep);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`printed no "${ready}" within ${timeoutMs} ms`), timeoutMs);
    const onLine = (line) => {
      if (line.includes(ready)) {
        proc.ready = line;
        done();
      }
    };
    const onExit = (code, signal) => fail(`exited (${signal || code}) before printing "${ready}"`);
    const onError = (e) => fail(`cannot start: ${e.message}`);
    function cleanup() {
      clearTimeout(timer);
      out.off('line', onLine);
      child.off('exit', onExit);
      child.off('error', onError);
    }
    function done() {
      cleanup();
      resolve();
    }
    function fail(why) {
      cleanup();
      reject(new Error(`${name} ${why}\n${tail(proc)}`));
    }
    out.on('line', onLine);
    child.on('exit', onExit);
    child.on('error', onError);
  });
  return proc;
}

/** SIGTERM, then SIGKILL if it has not exited within 5 s; waits for the exit. */
export async function stopProc(proc) {
  if (!proc) return;
  const { child } = proc;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  }
  children.delete(child);
}

export function tail(proc, n = 40) {
  return proc ? `--- ${proc.name} (last lines) ---\n${proc.log.slice(-n).join('\n')}` : '';
}

/** Polls `probe` until it returns `{ ok: true, … }`; fails with `what` and the last answer. */
export async function waitFor(what, probe, timeoutMs, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
    } catch (e) {
      last = { ok: false, error: e.message };
    }
    if (last.ok) return last;
    if (Date.now() >= deadline) throw new Error(`${what} within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(everyMs);
  }
}
