// dvrouter console: one page over the admin API (docs/operations.md, "Console" and "Admin API").
// Plain JavaScript, no dependencies. Every text from the router (CRM data, sink errors) goes into
// the page as text nodes, never as HTML.
'use strict';

const main = document.getElementById('main');
const statusLine = document.getElementById('status');
const TOKEN_KEY = 'dvrouter.admin-token';
// Each navigation starts a new generation; a page whose awaited answer arrives after the user
// moved on draws nothing (stale()).
let routeGeneration = 0;
function pageGeneration() { return routeGeneration; }

// ---- DOM and formatting helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'style') el.style.cssText = v;  // CSSOM: allowed by the page's CSP
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}
const pill = (state) => h('span', { class: `pill s-${state}` }, state.replaceAll('_', ' '));
function fmtNum(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
function fmtBytes(n) {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
function fmtSeconds(s) {
  if (!Number.isFinite(s)) return '–';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : '–');

// ---- the admin API

class AuthNeeded extends Error {}

async function api(path, options = {}) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, { ...options, headers, cache: 'no-store' });
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    askToken();
    throw new AuthNeeded('the admin token is needed');
  }
  const text = await res.text();
  let body;
  try { body = text ? JSON.parse(text) : null; } catch { body = { message: text }; }
  if (!res.ok) {
    const err = new Error((body && (body.message || body.error)) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

let tokenAsked = false;
function askToken() {
  const dialog = document.getElementById('token-dialog');
  if (tokenAsked || dialog.open) return;
  tokenAsked = true;
  dialog.showModal();
  document.getElementById('token-input').focus();
}
// Escape closes the dialog without a token: the next answer 401 asks again.
document.getElementById('token-dialog').addEventListener('close', () => { tokenAsked = false; });
document.getElementById('token-form').addEventListener('submit', () => {
  sessionStorage.setItem(TOKEN_KEY, document.getElementById('token-input').value.trim());
  tokenAsked = false;
  route();
});

function confirmDialog(text, okLabel) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = 'cancel';
    dialog.showModal();
    document.getElementById('confirm-ok').focus();
  });
}

function showError(where, err) {
  if (err instanceof AuthNeeded) return;
  where.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message));
}

// ---- /stats: samples kept for rates and sparklines (about five minutes)

const samples = [];
const SAMPLE_MS = 2000, KEEP = 150;

function series(stats, name) { return (stats && stats.series[name]) || []; }
function sum(stats, name, pred = () => true) {
  return series(stats, name).filter((m) => pred(m.labels)).reduce((a, m) => a + (m.value || 0), 0);
}
function byAdapter(stats, name, adapter, pred = () => true) {
  return sum(stats, name, (l) => l.adapter === adapter && pred(l));
}
function adaptersOf(stats) {
  const names = new Set(series(stats, 'dvrouter_delivery_lag_events').map((m) => m.labels.adapter));
  return [...names].filter(Boolean).sort();
}
const CLASS_OF = {
  accepted: '2xx', duplicate: '2xx', unauthorized: '4xx', bad_request: '4xx', too_large: '4xx',
  method_not_allowed: '4xx', not_found: '4xx', overloaded: '5xx',
};
function requests(stats, cls) {
  return sum(stats, 'dvrouter_requests_total', (l) => CLASS_OF[l.outcome] === cls);
}
// Per-second rate of f(stats) between the newest sample and the one `back` samples earlier.
function rate(f, back = 5) {
  if (samples.length < 2) return NaN;
  const a = samples[Math.max(0, samples.length - 1 - back)], b = samples[samples.length - 1];
  const dt = (b.at - a.at) / 1000;
  return dt > 0 ? Math.max(0, f(b) - f(a)) / dt : NaN;
}
// The rates between consecutive samples, for a sparkline.
function rateSeries(f) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].at - samples[i - 1].at) / 1000;
    out.push(dt > 0 ? Math.max(0, f(samples[i]) - f(samples[i - 1])) / dt : 0);
  }
  return out;
}
function sparkline(values, cls = '') {
  const w = 240, hgt = 44;
  const el = svg('svg', { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' });
  if (values.length < 2) return el;
  const max = Math.max(...values, 1e-9);
  const pts = values.map((v, i) => `${(i / (KEEP - 2)) * w},${hgt - 2 - (v / max) * (hgt - 4)}`);
  el.append(svg('polyline', { points: pts.join(' '), class: `spark ${cls}` }));
  return el;
}

async function sample() {
  try {
    const stats = await api('/stats');
    samples.push(stats);
    if (samples.length > KEEP) samples.shift();
    statusLine.textContent = `updated ${new Date(stats.at).toLocaleTimeString()}`;
    return stats;
  } catch (err) {
    statusLine.textContent = err instanceof AuthNeeded ? 'token needed' : `no answer: ${err.message}`;
    return null;
  }
}

// An adapter's state as the overview shows it.
function adapterState(stats, a) {
  const breaker = byAdapter(stats, 'dvrouter_delivery_breaker_state', a);
  if (breaker === 1) return 'breaker_open';
  const lag = byAdapter(stats, 'dvrouter_delivery_lag_events', a);
  const delivered = rate((s) => byAdapter(s, 'dvrouter_deliveries_total', a,
    (l) => l.outcome === 'delivered' || l.outcome === 'processing'));
  const retries = rate((s) => byAdapter(s, 'dvrouter_delivery_retries_total', a));
  if (retries > 0) return 'retrying';
  if (lag > 0 && samples.length > 5 && delivered === 0) return 'stalled';
  return 'ok';
}

// ---- pages

function card(label, value, extra) {
  return h('div', { class: 'card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), extra);
}

function renderOverview(stats) {
  if (!stats) return;
  const accepted = (s) => sum(s, 'dvrouter_requests_total', (l) => l.outcome === 'accepted');
  const budget = sum(stats, 'dvrouter_journal_budget_bytes');
  const bytes = sum(stats, 'dvrouter_journal_bytes');
  const share = budget > 0 ? Math.min(1, bytes / budget) : 0;
  const cards = h('div', { class: 'cards' },
    card('Events accepted / s', fmtNum(rate(accepted), 1), sparkline(rateSeries(accepted))),
    card('2xx / s', fmtNum(rate((s) => requests(s, '2xx')), 1), sparkline(rateSeries((s) => requests(s, '2xx')))),
    card('4xx / s', fmtNum(rate((s) => requests(s, '4xx')), 1), sparkline(rateSeries((s) => requests(s, '4xx')), 'warn')),
    card('5xx / s', fmtNum(rate((s) => requests(s, '5xx')), 1), sparkline(rateSeries((s) => requests(s, '5xx')), 'bad')),
    card('Journal', `${fmtBytes(bytes)}`, h('div', {},
      h('div', { class: `meter${share > 0.8 ? ' high' : ''}`, role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(share * 100), 'aria-label': 'journal bytes of the budget' },
        h('div', { style: `width:${(share * 100).toFixed(1)}%` })),
      h('div', { class: 'muted' }, `${(share * 100).toFixed(1)}% of ${fmtBytes(budget)} budget · ${fmtNum(sum(stats, 'dvrouter_journal_pending_events'))} events not yet synced`))));
  const rows = adaptersOf(stats).map((a) => {
    const state = adapterState(stats, a);
    const delivered = (s) => byAdapter(s, 'dvrouter_deliveries_total', a, (l) => l.outcome === 'delivered' || l.outcome === 'processing');
    return h('tr', {},
      h('td', {}, h('a', { href: `#/events?adapter=${encodeURIComponent(a)}` }, a)),
      h('td', {}, pill(state)),
      h('td', { class: 'num' }, fmtNum(byAdapter(stats, 'dvrouter_delivery_lag_events', a))),
      h('td', { class: 'num' }, fmtSeconds(byAdapter(stats, 'dvrouter_delivery_lag_seconds', a))),
      h('td', { class: 'num' }, fmtNum(rate(delivered), 1)),
      h('td', { class: 'num' }, fmtNum(rate((s) => byAdapter(s, 'dvrouter_delivery_retries_total', a)), 1)),
      h('td', { class: 'num' }, h('a', { href: `#/dlq?adapter=${encodeURIComponent(a)}` }, fmtNum(byAdapter(stats, 'dvrouter_dlq_entries', a)))),
      h('td', { class: 'num' }, fmtBytes(byAdapter(stats, 'dvrouter_journal_bytes_held', a))));
  });
  main.replaceChildren(
    h('h1', {}, 'Overview'), cards,
    h('h2', {}, 'Adapters'),
    h('table', { 'aria-label': 'adapters' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Adapter'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Lag (events)'),
        h('th', { class: 'num' }, 'Lag (time)'), h('th', { class: 'num' }, 'Deliveries / s'), h('th', { class: 'num' }, 'Retries / s'),
        h('th', { class: 'num' }, 'Dead letters'), h('th', { class: 'num' }, 'Journal held'))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'no adapters yet')))),
    h('p', { class: 'muted' }, 'Rates over the last 10 s; the lines show the last five minutes. Refreshes every 2 s.'));
}

function params() {
  const q = location.hash.indexOf('?');
  return new URLSearchParams(q >= 0 ? location.hash.slice(q + 1) : '');
}

async function renderEvents() {
  const mine = pageGeneration();
  const stale = () => mine !== routeGeneration;
  const p = params();
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'find events' },
    h('label', {}, 'Event id or row id', h('input', { name: 'q', id: 'search-q', value: p.get('row_id') || p.get('q') || '', size: 40, placeholder: 'GUID or 32 hex digits' })),
    h('label', {}, 'Table', h('input', { name: 'table', value: p.get('table') || '', size: 14 })),
    h('label', {}, 'Message', h('input', { name: 'message', value: p.get('message') || '', size: 10 })),
    h('label', {}, 'State', h('select', { name: 'state' }, ['', 'pending', 'submitted', 'processing', 'completed', 'failed'].map((s) =>
      h('option', { value: s, selected: (p.get('state') || '') === s }, s || 'any')))),
    h('button', { type: 'submit', class: 'primary' }, 'Search'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const q = String(f.get('q')).trim();
    if (/^[0-9a-fA-F]{32}$/.test(q)) { location.hash = `#/event/${q.toLowerCase()}`; return; }
    const next = new URLSearchParams();
    if (q) next.set('row_id', q);
    for (const k of ['table', 'message', 'state']) if (f.get(k)) next.set(k, String(f.get(k)).trim());
    if (p.get('adapter')) next.set('adapter', p.get('adapter'));
    location.hash = `#/events?${next}`;
  });
  const results = h('div', {}, h('p', { class: 'muted' }, 'Searching…'));
  main.replaceChildren(h('h1', {}, 'Events'), form, results);
  const query = new URLSearchParams();
  for (const k of ['row_id', 'table', 'message', 'state', 'adapter', 'before']) if (p.get(k)) query.set(k, p.get(k));
  query.set('limit', '50');
  try {
    const found = await api(`/events?${query}`);
    if (stale()) return;
    const events = found.events;
    const rows = events.map((e) => h('tr', {},
      h('td', {}, h('a', { href: `#/event/${e.event_id}`, class: 'mono' }, e.event_id)),
      h('td', { class: 'num' }, e.seq),
      h('td', {}, fmtTime(e.received_at)),
      h('td', {}, e.table || ''), h('td', {}, e.message || ''),
      h('td', { class: 'mono' }, e.row_id || ''),
      h('td', {}, Object.entries(e.adapters).map(([a, s]) => h('span', { title: `${s.attempts} attempt(s)` }, `${a} `, pill(s.state), ' ')))));
    const older = found.next_before !== null
      ? h('a', { href: `#/events?${new URLSearchParams([...query.entries()].filter(([k]) => k !== 'limit' && k !== 'before').concat([['before', String(found.next_before)]]))}` }, 'Older events →')
      : null;
    results.replaceChildren(
      h('table', { 'aria-label': 'events' },
        h('thead', {}, h('tr', {}, ['Event', 'Seq', 'Received', 'Table', 'Message', 'Row', 'Adapters'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'no event matches')))),
      h('div', { class: 'toolbar' }, older, h('span', { class: 'muted' }, `searched the ${fmtNum(found.kept)} most recent events the router keeps`)));
  } catch (err) { showError(results, err); }
  if (!p.toString()) document.getElementById('search-q').focus();
}

// A timeline step's name: "pending" is queued at first, a retry waiting after a failure.
function stepLabel(st) {
  if (st.state !== 'pending') return st.state;
  return st.error ? 'retry_scheduled' : 'queued';
}

function bodyView(text) {
  let pretty = text;
  try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch { /* shown as received */ }
  const pre = h('pre', { class: 'body' }, pretty);
  if (pretty.length <= 20000) return pre;
  return h('details', {}, h('summary', {}, `Body (${fmtBytes(text.length)}): show`), pre);
}

async function renderEvent(id) {
  const mine = pageGeneration();
  main.replaceChildren(h('h1', {}, 'Event ', h('span', { class: 'mono' }, id)), h('p', { class: 'muted' }, 'Loading…'));
  let ev;
  try { ev = await api(`/events/${encodeURIComponent(id)}?record=1`); } catch (err) { if (mine === routeGeneration) showError(main, err); return; }
  if (mine !== routeGeneration) return;
  const head = ev.record && ev.record.header;
  const fields = h('dl', { class: 'fields' },
    [['Seq', ev.seq], ['Table', ev.table], ['Row', ev.row_id], ['Message', ev.message], ['Received', fmtTime(ev.received_at)]]
      .concat(head ? [['Stage', head.stage], ['Mode', head.mode === 1 ? 'asynchronous' : 'synchronous'], ['Depth', head.depth],
        ['Correlation', head.correlation_id], ['Operation', head.operation_id], ['Step (OwningExtension)', head.owning_extension_id],
        ['Initiating user', head.initiating_user_id], ['Organization', head.organization_name || head.organization_host],
        ['Operation created', head.operation_created_on ? fmtTime(head.operation_created_on) : '']] : [])
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
  const adapters = Object.entries(ev.adapters).map(([name, s]) => {
    const steps = (s.steps || []).map((st) => h('li', { class: `t-${st.state}` },
      h('span', { class: 'when' }, fmtTime(st.at)), pill(stepLabel(st)),
      st.attempt ? ` attempt ${st.attempt}` : '', st.replay ? ' (replay)' : '',
      st.error ? h('div', { class: 'err' }, st.error) : null,
      st.same_error ? h('div', { class: 'muted' }, 'the same error as before') : null,
      st.answer ? h('div', {}, 'answer: ', h('code', {}, st.answer)) : null));
    if (s.steps_left_out) steps.splice(1, 0, h('li', { class: 'muted' }, `… ${s.steps_left_out} steps left out`));
    const replay = s.dlq && !s.dlq.replayed
      ? h('button', { type: 'button', onclick: () => replayIds([s.dlq.id], () => renderEvent(id)) }, `Replay dead letter #${s.dlq.id}`)
      : null;
    return h('section', { class: 'adapter', 'aria-label': `adapter ${name}` },
      h('h3', {}, name, pill(s.routed === false ? 'not_routed' : s.state), h('span', { class: 'muted' }, `${s.attempts || 0} attempt(s)`)),
      s.last_error ? h('div', { class: s.state === 'completed' ? 'muted' : 'err' }, s.state === 'completed' ? 'Earlier error: ' : 'Last error: ', s.last_error) : null,
      s.answer ? h('div', {}, 'Answer: ', h('code', {}, s.answer)) : null,
      steps.length ? h('ol', { class: 'timeline', 'aria-label': `${name} timeline` }, steps) : null,
      s.written_back ? h('div', {}, 'Written back to the CRM row: ', pill(s.written_back.state), ` by ${s.written_back.by || 'write-back'} at ${fmtTime(s.written_back.at)}`) : null,
      s.dlq ? h('div', { class: 'notice' }, `Dead letter #${s.dlq.id} (${s.dlq.reason}) ${s.dlq.replayed ? '— replayed' : ''}`, ' ', replay) : null);
  });
  main.replaceChildren(
    h('h1', {}, `${ev.message || 'Event'} of ${ev.table || '?'} `, h('span', { class: 'mono muted' }, ev.event_id)),
    fields, h('h2', {}, 'Delivery'), ...adapters,
    h('h2', {}, 'Body'),
    ev.record && ev.record.body !== undefined ? bodyView(ev.record.body)
      : h('p', { class: 'muted' }, (ev.record && ev.record.error) || 'not available'));
}

async function replayIds(ids, then) {
  if (!(await confirmDialog(`Send ${ids.length} dead letter(s) back to their adapter?`, 'Replay'))) return;
  try {
    const r = await api(`/dlq/replay?ids=${ids.join(',')}`, { method: 'POST' });
    statusLine.textContent = `replayed ${r.replayed}${r.not_replayed && r.not_replayed.length ? `, not replayed: ${r.not_replayed.join(', ')}` : ''}`;
  } catch (err) { statusLine.textContent = `replay failed: ${err.message}`; }
  then();
}

async function renderDlq() {
  const mine = pageGeneration();
  const p = params();
  const adapters = adaptersOf(samples[samples.length - 1] || (await sample()));
  if (mine !== routeGeneration) return;
  const since = p.get('since') || '';
  const form = h('form', { class: 'filters', 'aria-label': 'filter dead letters' },
    h('label', {}, 'Adapter', h('select', { name: 'adapter' }, [''].concat(adapters).map((a) => h('option', { value: a, selected: (p.get('adapter') || '') === a }, a || 'all')))),
    h('label', {}, 'Reason', h('select', { name: 'reason' }, [['', 'any'], ['permanent', 'permanent'], ['gave_up', 'gave up']].map(([v, t]) => h('option', { value: v, selected: (p.get('reason') || '') === v }, t)))),
    h('label', {}, 'Failed', h('select', { name: 'since' }, [['', 'any time'], ['3600', 'last hour'], ['86400', 'last day']].map(([v, t]) => h('option', { value: v, selected: since === v }, t)))),
    h('label', {}, 'Replayed too', h('input', { type: 'checkbox', name: 'all', value: '1', checked: p.get('all') === '1' })),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, String(v));
    location.hash = `#/dlq?${next}`;
  });
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  main.replaceChildren(h('h1', {}, 'Dead letters'), form, list);
  const q = new URLSearchParams({ limit: '500' });
  if (p.get('adapter')) q.set('adapter', p.get('adapter'));
  if (p.get('reason')) q.set('reason', p.get('reason'));
  if (p.get('all') === '1') q.set('all', '1');
  if (since) q.set('since', String(Date.now() - Number(since) * 1000));
  let entries;
  try { entries = await api(`/dlq?${q}`); } catch (err) { showError(list, err); return; }
  if (mine !== routeGeneration) return;
  entries.reverse();  // newest first
  const replayButton = h('button', { type: 'button', class: 'primary', id: 'replay-selected', disabled: true }, 'Replay selected');
  const boxes = [];
  const update = () => {
    const n = boxes.filter((b) => b.checked).length;
    replayButton.disabled = n === 0;
    replayButton.textContent = n ? `Replay selected (${n})` : 'Replay selected';
  };
  const all = h('input', { type: 'checkbox', 'aria-label': 'select all', onchange: () => { boxes.forEach((b) => { if (!b.disabled) b.checked = all.checked; }); update(); } });
  const rows = entries.map((e) => {
    const box = h('input', { type: 'checkbox', value: e.id, 'aria-label': `select dead letter ${e.id}`, disabled: e.replayed, onchange: update });
    boxes.push(box);
    return h('tr', { 'data-dlq-id': e.id },
      h('td', {}, box), h('td', { class: 'num' }, e.id), h('td', {}, e.adapter),
      h('td', {}, h('a', { href: `#/event/${e.event_id}`, class: 'mono' }, e.event_id.slice(0, 12) + '…')),
      h('td', {}, `${e.message} ${e.table}`), h('td', { class: 'mono' }, e.row_id),
      h('td', {}, e.reason), h('td', { class: 'err' }, e.last_error), h('td', {}, fmtTime(e.failed_at)),
      h('td', {}, pill(e.replayed ? 'replayed' : 'failed')));
  });
  replayButton.addEventListener('click', () => replayIds(boxes.filter((b) => b.checked).map((b) => b.value), renderDlq));
  list.replaceChildren(
    h('div', { class: 'toolbar' }, replayButton, h('span', { class: 'muted' }, `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`)),
    h('table', { 'aria-label': 'dead letters' },
      h('thead', {}, h('tr', {}, h('th', {}, all), ['Id', 'Adapter', 'Event', 'Change', 'Row', 'Reason', 'Error', 'Failed', 'State'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 10, class: 'muted' }, 'no dead letters')))));
}

async function renderReplay() {
  const mine = pageGeneration();
  const adapters = adaptersOf(samples[samples.length - 1] || (await sample()));
  if (mine !== routeGeneration) return;
  const bySeq = h('fieldset', { class: 'filters', id: 'by-seq' },
    h('label', {}, 'From seq', h('input', { name: 'from', type: 'number', min: 1 })),
    h('label', {}, 'To seq', h('input', { name: 'to', type: 'number', min: 1 })));
  const byTime = h('fieldset', { class: 'filters', id: 'by-time', hidden: true },
    h('label', {}, 'Received from', h('input', { name: 'from_time', type: 'datetime-local', step: 1 })),
    h('label', {}, 'Received until', h('input', { name: 'to_time', type: 'datetime-local', step: 1 })));
  const mode = h('select', { name: 'by', 'aria-label': 'range by' },
    h('option', { value: 'seq' }, 'journal seq'), h('option', { value: 'time' }, 'time received'));
  mode.addEventListener('change', () => { bySeq.hidden = mode.value !== 'seq'; byTime.hidden = mode.value !== 'time'; });
  const form = h('form', { class: 'filters', 'aria-label': 'replay a range' },
    h('label', {}, 'Adapter', h('select', { name: 'adapter', required: true }, adapters.map((a) => h('option', { value: a }, a)))),
    h('label', {}, 'Range by', mode), bySeq, byTime,
    h('button', { type: 'submit', class: 'primary' }, 'Replay range'));
  const queue = h('div', {});
  const note = h('p', { class: 'muted' }, 'Delivers a retained journal range to one adapter again (the adapter dedupes by event id), by journal seq or by the time the events were received (your local time). One range per adapter is queued at a time.');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const q = new URLSearchParams({ adapter: f.get('adapter') });
    let what;
    if (mode.value === 'seq') {
      if (!f.get('from') || !f.get('to')) { statusLine.textContent = 'give both seqs'; return; }
      q.set('from', f.get('from'));
      q.set('to', f.get('to'));
      what = `seq ${f.get('from')} to ${f.get('to')}`;
    } else {
      if (!f.get('from_time') || !f.get('to_time')) { statusLine.textContent = 'give both times'; return; }
      q.set('from_time', new Date(f.get('from_time')).toISOString());
      q.set('to_time', new Date(f.get('to_time')).toISOString());
      what = `the events received from ${f.get('from_time').replace('T', ' ')} to ${f.get('to_time').replace('T', ' ')}`;
    }
    if (!(await confirmDialog(`Deliver ${what} to ${f.get('adapter')} again?`, 'Replay'))) return;
    try {
      const r = await api(`/replay?${q}`, { method: 'POST' });
      statusLine.textContent = `replaying ${r.replaying.adapter} up to seq ${r.replaying.to}`;
    } catch (err) { statusLine.textContent = `replay refused: ${err.message}`; }
    showQueue();
  });
  async function showQueue() {
    try {
      const r = await api('/replay');
      const rows = r.replays.map((j) => h('tr', {},
        h('td', {}, j.adapter), h('td', {}, j.kind),
        h('td', {}, j.kind === 'range' ? `${j.from}–${j.to}${j.from_time ? ` (${fmtTime(j.from_time)} – ${fmtTime(j.to_time)})` : ''}` : `${j.entries} dead letters`),
        h('td', { class: 'num' }, j.kind === 'range' ? j.next : j.sent), h('td', {}, pill(j.state === 'running' ? 'processing' : 'pending'), ` ${j.state}`)));
      queue.replaceChildren(h('h2', {}, 'Replays queued and running'),
        h('table', { 'aria-label': 'replays' },
          h('thead', {}, h('tr', {}, ['Adapter', 'Kind', 'Range', 'Next', 'State'].map((t) => h('th', {}, t)))),
          h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'none')))),
        h('p', { class: 'muted' }, `${r.in_flight} replayed events on their way to the adapters`));
    } catch (err) { showError(queue, err); }
  }
  main.replaceChildren(h('h1', {}, 'Replay a range'), note, form, queue);
  showQueue();
  timer = setInterval(showQueue, SAMPLE_MS);  // cleared by the next route()
}

// ---- routing

let timer = null;
async function route() {
  clearInterval(timer);
  timer = null;
  const generation = ++routeGeneration;
  const hash = location.hash || '#/';
  const page = hash.startsWith('#/event/') ? 'events' : hash.startsWith('#/events') ? 'events'
    : hash.startsWith('#/dlq') ? 'dlq' : hash.startsWith('#/replay') ? 'replay' : 'overview';
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.nav === page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (hash.startsWith('#/event/')) return renderEvent(decodeURIComponent(hash.slice(8)));
  if (page === 'events') return renderEvents();
  if (page === 'dlq') return renderDlq();
  if (page === 'replay') return renderReplay();
  main.replaceChildren(h('h1', {}, 'Overview'), h('p', { class: 'muted' }, 'Loading…'));
  const first = await sample();
  if (generation !== routeGeneration) return;
  renderOverview(first);
  timer = setInterval(async () => {
    const stats = await sample();
    if (generation === routeGeneration) renderOverview(stats);
  }, SAMPLE_MS);
}
window.addEventListener('hashchange', route);
document.addEventListener('keydown', (ev) => {
  if (ev.key === '/' && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
    ev.preventDefault();
    if (!location.hash.startsWith('#/events')) location.hash = '#/events';
    else document.getElementById('search-q')?.focus();
  }
});
route();
