// The page: device cards, the selected device's chart and readings, live updates. Read-only.

import './style.css';
import { checkConfig, createApi, ON_CREATE_TELEMETRY, ON_UPDATE_DEVICE } from './api.js';
import { chartSvg } from './chart.js';
import {
  applyDeviceUpdate,
  formatAge,
  formatNumber,
  formatTime,
  isReading,
  mergeReadings,
  newerReading,
  rangeBounds,
  sortDevices,
  statusOf,
} from './logic.js';
import { RealtimeClient } from './realtime.js';

const RETRY_MS = 10000;
const TICK_MS = 15000;
const MAX_READINGS = 5000;
const LIST_LENGTH = 10;
const RENDER_MS = 100;
// A registered device that has not connected yet has no status.
const STATUS_LABELS = { unknown: 'not connected yet' };

const $ = (id) => document.getElementById(id);

const state = {
  api: null,
  devices: [],
  latest: new Map(),
  selected: null,
  range: 'hour',
  readings: [],
  truncated: false,
  loaded: false,
  chartRequest: 0,
};

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = !message;
}

function setLive(stateName, detail) {
  const live = $('live');
  live.dataset.state = stateName;
  live.textContent = { connecting: 'connecting…', connected: '● live', disconnected: 'live updates lost, reconnecting…' }[
    stateName
  ];
  live.title = detail ? String(detail.message || detail) : 'Live updates';
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function readingText(reading) {
  if (!reading) return 'No readings yet';
  return `${formatNumber(reading.temperature)} °C · ${formatNumber(reading.humidity)} %RH`;
}

function lastSeen(device) {
  const reading = state.latest.get(device.device_id);
  const times = [device.last_seen, reading && reading.timestamp].filter(Number.isFinite);
  return times.length ? Math.max(...times) : null;
}

function renderCard(device, now) {
  const status = statusOf(device);
  const card = element('article', `card status-${status}`);
  card.dataset.deviceId = device.device_id;
  card.dataset.status = status;
  card.tabIndex = 0;
  card.setAttribute('role', 'button');
  card.setAttribute('aria-pressed', String(device.device_id === state.selected));
  const head = element('div', 'card-head');
  const badge = element('span', `badge badge-${status}`, STATUS_LABELS[status] || status);
  badge.dataset.role = 'status';
  head.append(badge);
  card.append(head, element('h2', 'thing', device.device_id));
  const facts = element('dl', 'facts');
  const seen = lastSeen(device);
  for (const [label, value, role, title] of [
    ['Owner', device.owner || '–', 'owner'],
    ['Location', device.location || '–', 'location'],
    ['Last seen', formatAge(seen, now), 'last-seen', seen ? formatTime(seen) : ''],
  ]) {
    const dd = element('dd', '', value);
    dd.dataset.role = role;
    if (title) dd.title = title;
    facts.append(element('dt', '', label), dd);
  }
  card.append(facts);
  const reading = state.latest.get(device.device_id);
  const latest = element('div', 'latest');
  latest.dataset.role = 'latest';
  latest.append(element('span', 'value', readingText(reading)));
  if (reading) latest.append(element('time', 'when', formatTime(reading.timestamp)));
  card.append(latest);
  const select = () => selectDevice(device.device_id);
  card.addEventListener('click', select);
  card.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      select();
    }
  });
  return card;
}

function renderDevices() {
  const now = Date.now();
  const focused = document.activeElement && document.activeElement.dataset.deviceId;
  $('loading').hidden = state.loaded;
  $('empty').hidden = !state.loaded || state.devices.length > 0;
  $('devices').replaceChildren(...state.devices.map((device) => renderCard(device, now)));
  $('detail').hidden = !state.selected;
  if (focused) {
    const card = [...$('devices').children].find((c) => c.dataset.deviceId === focused);
    if (card) card.focus();
  }
}

// Live events arrive in bursts with a large fleet: draw at most every RENDER_MS.
let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => {
    renderPending = false;
    renderDevices();
    renderDetail();
  }, RENDER_MS);
}

function renderDetail() {
  if (!state.selected) return;
  const device = state.devices.find((d) => d.device_id === state.selected);
  $('detail-title').textContent = device ? device.device_id : state.selected;
  for (const button of document.querySelectorAll('[data-range]')) {
    button.setAttribute('aria-pressed', String(button.dataset.range === state.range));
  }
  const { from, to } = rangeBounds(state.range, Date.now());
  $('chart').innerHTML = chartSvg(state.readings, { from, to });
  const count = state.readings.length;
  $('chart-note').textContent =
    count === 0
      ? 'No readings in this range.'
      : `${count} reading${count === 1 ? '' : 's'}${state.truncated ? ` (the newest ${MAX_READINGS} only)` : ''}.`;
  const items = state.readings.slice(0, LIST_LENGTH).map((reading) => {
    const li = element('li', 'reading');
    li.dataset.timestamp = String(reading.timestamp);
    li.append(element('span', 'value', readingText(reading)), element('time', 'when', formatTime(reading.timestamp)));
    return li;
  });
  $('readings').replaceChildren(...items);
}

async function loadReadings() {
  if (!state.selected) return;
  const request = ++state.chartRequest;
  const deviceId = state.selected;
  const { from, to } = rangeBounds(state.range, Date.now());
  try {
    const result = await state.api.telemetry(deviceId, { from, to, maxItems: MAX_READINGS });
    if (request !== state.chartRequest) return; // a newer selection won
    // Keep live readings that arrived while the pages were loading.
    state.readings = mergeReadings(result.items, state.readings.filter((r) => r.device_id === deviceId), {
      from,
      maxItems: MAX_READINGS,
    });
    state.truncated = result.truncated;
    renderDetail();
  } catch (error) {
    showError(error.message);
  }
}

function selectDevice(deviceId) {
  if (state.selected !== deviceId) {
    state.selected = deviceId;
    state.readings = [];
    state.truncated = false;
  }
  renderDevices();
  renderDetail();
  void loadReadings();
}

async function mapLimited(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function loadDevices() {
  const devices = sortDevices(await state.api.listDevices());
  const latest = await mapLimited(devices, 8, (device) => state.api.latestReading(device.device_id));
  state.devices = devices;
  devices.forEach((device, index) => {
    state.latest.set(device.device_id, newerReading(state.latest.get(device.device_id), latest[index]));
  });
  state.loaded = true;
  if (!state.selected || !devices.some((d) => d.device_id === state.selected)) {
    state.selected = devices.length ? devices[0].device_id : null;
  }
  renderDevices();
  await loadReadings();
}

async function refresh() {
  try {
    await loadDevices();
    showError('');
  } catch (error) {
    showError(`${error.message}. Retrying in ${RETRY_MS / 1000} s.`);
    $('loading').hidden = true;
    setTimeout(refresh, RETRY_MS);
  }
}

function onTelemetry(data) {
  const reading = data && data.onCreateTelemetry;
  if (!isReading(reading)) return;
  if (!state.devices.some((d) => d.device_id === reading.device_id)) return;
  state.latest.set(reading.device_id, newerReading(state.latest.get(reading.device_id), reading));
  if (reading.device_id === state.selected) {
    const { from } = rangeBounds(state.range, Date.now());
    state.readings = mergeReadings(state.readings, [reading], { from, maxItems: MAX_READINGS });
  }
  scheduleRender();
}

function onDevice(data) {
  const update = data && data.onUpdateDevice;
  if (!update) return;
  state.devices = applyDeviceUpdate(state.devices, update);
  if (!state.selected) state.selected = update.device_id;
  state.loaded = true;
  scheduleRender();
}

function tick() {
  renderDevices();
  if (state.selected) {
    const { from } = rangeBounds(state.range, Date.now());
    state.readings = mergeReadings(state.readings, [], { from, maxItems: MAX_READINGS });
    renderDetail();
  }
}

async function start() {
  let config;
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    config = checkConfig(await response.json());
  } catch (error) {
    $('loading').hidden = true;
    showError(`The dashboard has no configuration (config.json: ${error.message}); deploy it with site.yml.`);
    setLive('disconnected');
    return;
  }
  state.api = createApi(config);
  for (const button of document.querySelectorAll('[data-range]')) {
    button.addEventListener('click', () => {
      state.range = button.dataset.range;
      state.readings = [];
      renderDetail();
      void loadReadings();
    });
  }
  let everConnected = false;
  const realtime = new RealtimeClient(config, {
    onState(name, detail) {
      setLive(name, detail);
      if (name === 'connected') {
        // After a reconnect, catch up on what was missed while the connection was down.
        if (everConnected) void refresh();
        everConnected = true;
      }
    },
  });
  realtime.subscribe(ON_CREATE_TELEMETRY, {}, onTelemetry, (message) => showError(`Live readings: ${message}`));
  realtime.subscribe(ON_UPDATE_DEVICE, {}, onDevice, (message) => showError(`Live device status: ${message}`));
  await refresh();
  setInterval(tick, TICK_MS);
}

void start();
