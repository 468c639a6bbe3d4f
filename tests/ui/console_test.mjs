// The console (/ui/) in a real browser (docs/testing.md, "Console in a browser"):
// a dvrouter with an admin token delivers to the ERP simulator, which refuses the orders of two
// customers; the test opens the console in headless Chromium, gives it the token, finds one
// refused event by its row id and reads the ERP's error in its timeline, lets the simulator
// take those customers again, replays the dead letters from the page and sees them completed.
// Screenshots of every page go to --out.
//
//   node console_test.mjs --dvrouter BIN --erp-sim BIN --fixtures DIR --out DIR
// Exit 0: passed; 1: failed; 77: skipped (no Chromium or no playwright-core: install-deps.sh
// installs both).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    dvrouter: { type: 'string' }, 'erp-sim': { type: 'string' }, fixtures: { type: 'string' },
    out: { type: 'string' }, chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
for (const k of ['dvrouter', 'erp-sim', 'fixtures', 'out']) {
  if (!args[k]) { console.error(`console_test: --${k} is required`); process.exit(2); }
}

function skip(why) {
  console.log(`console_test: SKIPPED: ${why}`);
  process.exit(77);
}
if (!existsSync(args.chromium)) skip(`no Chromium at ${args.chromium} (Debian package chromium)`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  skip('playwright-core is not installed in tests/ui (npm ci --prefix tests/ui)');
}

const deadline = (ms) => Date.now() + ms;
async function waitFor(what, fn, ms = 30000) {
  const until = deadline(ms);
  let last;
  while (Date.now() < until) {
    try { last = await fn(); if (last) return last; } catch (err) { last = err; }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

// ---- child processes: every one is stopped when the test ends, whatever happens

const children = [];
function stopAll() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
}
process.on('exit', stopAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { stopAll(); process.exit(1); });

// Starts `bin args` and resolves with the first match of `ready` in its stderr.
function start(name, bin, argv, ready, env = {}) {
  const child = spawn(bin, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  child.log = () => log;
  return waitFor(`${name} to start`, () => {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${log}`);
    const m = log.match(ready);
    return m ? { child, m } : null;
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'dvrouter-console-'));
const startedAt = Date.now();
mkdirSync(args.out, { recursive: true });
const TOKEN = 'console-test-token-' + Math.random().toString(36).slice(2);

let browser;
let page;
let failed = false;
try {
  // ---- the ERP simulator and a router delivering to it and to the lake
  const erp = await start('erp-sim', args['erp-sim'], ['--listen', '127.0.0.1:0'], /listening on 127\.0\.0\.1:(\d+)/);
  const erpUrl = `http://127.0.0.1:${erp.m[1]}`;
  writeFileSync(join(tmp, 'router.yaml'), `ingress:
  auth: {mode: none}
admin:
  auth:
    token: \${DVROUTER_CONSOLE_TEST_TOKEN}
journal:
  partitions: 4
adapters:
  lake:
    type: lake
    dir: ${join(tmp, 'lake')}
  erp:
    type: erp
    base_url: ${erpUrl}
    request_timeout: 2s
    retry: {initial_backoff: 20ms, max_backoff: 200ms}
    requests:
      - name: orders
        tables: [msdyn_agentstatus]
        path: /api/orders
        body: '{"crm_id": {{header.row_id}}, "seq": {{event.seq}}}'
        capture: {order_number: /orderNumber}
routes:
  - adapters: [lake, erp]
`);
  const router = await start('dvrouter', args.dvrouter,
    ['serve', '-c', join(tmp, 'router.yaml'), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--data-dir', join(tmp, 'data')],
    /ingress on 127\.0\.0\.1:(\d+)(\S*), admin on 127\.0\.0\.1:(\d+)/, { DVROUTER_CONSOLE_TEST_TOKEN: TOKEN });
  const ingress = `http://127.0.0.1:${router.m[1]}${router.m[2]}`;
  const admin = `http://127.0.0.1:${router.m[3]}`;
  const adminApi = async (path, method = 'GET') => {
    const r = await fetch(admin + path, { method, headers: { Authorization: `Bearer ${TOKEN}` } });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };

  // ---- 10 rows, 2 changes each; the ERP refuses the orders of rows 3 and 7
  const fixture = readFileSync(join(args.fixtures, 'update-msdyn_agentstatus-postop-async.json'), 'utf8');
  const row = (r) => `3d1feef9-604d-ef11-bfe3-${String(r).padStart(12, '0')}`;
  const refused = [row(3), row(7)];
  for (const r of refused) await fetch(`${erpUrl}/_control?reject=${r}`, { method: 'POST' });
  const eventIds = {};
  for (let k = 0; k < 2; k++) {
    for (let r = 0; r < 10; r++) {
      const body = fixture
        .replaceAll('1a14c3ec-9c50-ef11-bfe3-00224802dbb1', `${r.toString(16).padStart(8, '0')}-4444-4000-8000-${String(k).padStart(12, '0')}`)
        .replaceAll('3d1feef9-604d-ef11-bfe3-6045bd03d9d8', row(r));
      const res = await fetch(ingress, { method: 'POST', body, headers: { 'Content-Type': 'application/json' } });
      const answer = await res.json();
      if (res.status !== 200) throw new Error(`webhook answered ${res.status}: ${JSON.stringify(answer)}`);
      (eventIds[row(r)] ||= []).push(answer.event_id);
    }
  }
  // A 400 is permanent: each of the refused rows' four changes becomes a dead letter.
  await waitFor('4 dead letters', async () => (await adminApi('/dlq?adapter=erp')).length === 4);

  // ---- the console
  browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1366, height: 860 } });
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  const shot = (name) => page.screenshot({ path: join(args.out, `${name}.png`), fullPage: true });

  await page.goto(`${admin}/ui/`);
  // The router has a token: the page asks for it once, and keeps it for the session.
  await page.locator('#token-dialog').waitFor({ state: 'visible' });
  await shot('0-token');
  await page.fill('#token-input', TOKEN);
  await page.press('#token-input', 'Enter');
  await page.locator('table[aria-label="adapters"] td', { hasText: 'erp' }).first().waitFor();
  // Rates need two samples; the dead letters show in the adapters table.
  await waitFor('the overview to show the DLQ size', async () =>
    (await page.locator('table[aria-label="adapters"] tr', { hasText: 'erp' }).innerText()).includes('\t4\t'));
  await waitFor('a rate on the overview', async () =>
    /\d/.test(await page.locator('.card .value').first().innerText()));
  await shot('1-overview');

  // Find one refused event by its row id, and read the ERP's answer in its timeline.
  await page.click('nav a[data-nav="events"]');
  await page.fill('#search-q', refused[0]);
  await page.press('#search-q', 'Enter');
  const results = page.locator('table[aria-label="events"] tbody tr');
  await waitFor('two events of the refused row', async () => (await results.count()) === 2 &&
    (await results.first().innerText()).includes(refused[0]));
  await shot('2-search');
  // Newest first: the first line is the row's second change.
  if (!(await results.first().innerText()).includes(eventIds[refused[0]][1])) {
    throw new Error('the search does not list the newest event first');
  }
  await results.first().locator('a').first().click();
  const erpTimeline = page.locator('ol[aria-label="erp timeline"]');
  await erpTimeline.waitFor();
  const timelineText = await erpTimeline.innerText();
  if (!timelineText.includes('customer blocked for ordering') || !timelineText.includes('failed')) {
    throw new Error(`the event's ERP timeline does not show the ERP's error: ${timelineText}`);
  }
  if (!(await page.locator('pre.body').innerText()).includes(refused[0])) {
    throw new Error('the event page does not show the body');
  }
  await shot('3-event-failed');

  // The ERP takes those customers again: replay every dead letter from the page.
  for (const r of refused) await fetch(`${erpUrl}/_control?unreject=${r}`, { method: 'POST' });
  await page.click('nav a[data-nav="dlq"]');
  const dlqRows = page.locator('table[aria-label="dead letters"] tbody tr[data-dlq-id]');
  await waitFor('the 4 dead letters listed', async () => (await dlqRows.count()) === 4);
  await shot('4-dlq');
  await page.check('input[aria-label="select all"]');
  await page.click('#replay-selected');
  await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
  await shot('5-dlq-confirm');
  await page.click('#confirm-ok');
  // The POST answered before the page is left.
  await page.locator('#status', { hasText: 'replayed 4' }).waitFor();
  // Replayed entries leave the default list; with "Replayed too" they show as replayed.
  await page.goto(`${admin}/ui/#/dlq?all=1`);
  await waitFor('the dead letters replayed', async () => {
    await page.reload();  // the same address again: only a reload renders it anew
    await page.locator('table[aria-label="dead letters"] tbody tr').first().waitFor();
    const text = await page.locator('table[aria-label="dead letters"] tbody').innerText();
    return (text.match(/replayed/g) || []).length === 4;
  });
  await shot('6-dlq-replayed');

  // Completed at the ERP, with the order number captured.
  const id = eventIds[refused[0]][1];
  await page.goto(`${admin}/ui/#/event/${id}`);
  await waitFor('the replayed event completed', async () => {
    await page.reload();
    await erpTimeline.waitFor();
    const section = await page.locator('section[aria-label="adapter erp"]').innerText();
    return section.includes('completed') && /SO-\d+/.test(section);
  });
  await shot('7-event-completed');
  const stats = await (await fetch(`${erpUrl}/_stats`)).json();
  if (stats.created !== 20) throw new Error(`the ERP created ${stats.created} orders, not 20`);

  // A range replay by time to the ERP: every order again, each a duplicate the ERP recognizes by
  // its Idempotency-Key (no new order), and the queue shown on the page.
  await page.click('nav a[data-nav="replay"]');
  await page.locator('form[aria-label="replay a range"]').waitFor();
  const local = (ms) => {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };
  await page.selectOption('select[name="adapter"]', 'erp');
  await page.selectOption('select[aria-label="range by"]', 'time');
  await page.fill('input[name="from_time"]', local(startedAt - 60_000));
  await page.fill('input[name="to_time"]', local(Date.now() + 60_000));
  await shot('8-replay');
  const duplicatesBefore = (await (await fetch(`${erpUrl}/_stats`)).json()).duplicates;
  await page.click('form[aria-label="replay a range"] button[type="submit"]');
  await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
  await page.click('#confirm-ok');
  await waitFor('the ERP to see every order again', async () =>
    (await (await fetch(`${erpUrl}/_stats`)).json()).duplicates >= duplicatesBefore + 20);
  const after = await (await fetch(`${erpUrl}/_stats`)).json();
  if (after.created !== 20) throw new Error(`the replay created orders: ${after.created}`);
  await page.locator('table[aria-label="replays"]').waitFor();
  await shot('9-replay-queued');
  // The first call before the token was given is answered 401, which Chromium logs; nothing else.
  consoleErrors.splice(0, consoleErrors.length, ...consoleErrors.filter((e) => !e.includes('status of 401')));
  if (consoleErrors.length) throw new Error(`the page logged errors: ${consoleErrors.join(' | ')}`);
  console.log(`console_test: passed; screenshots in ${args.out}`);
} catch (err) {
  failed = true;
  console.error(`console_test: FAILED: ${err.stack || err}`);
  if (page) {
    await page.screenshot({ path: join(args.out, 'failure.png'), fullPage: true }).catch(() => {});
    console.error(`--- the page (${page.url()}):\n${(await page.locator('body').innerText().catch(() => '')).slice(0, 3000)}`);
  }
  for (const c of children) console.error(`--- ${c.spawnfile} log:\n${c.log().slice(-3000)}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  stopAll();
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null
    ? null : new Promise((r) => c.once('exit', r)))));
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
