// Pure logic of the dashboard: time ranges, paging, merging live events, downsampling, formatting.
// No DOM and no network here, so node's test runner covers it (test/logic.test.js).

export const RANGES = Object.freeze({
  hour: 60 * 60 * 1000,
  day: 24 * 60 * 60 * 1000,
  week: 7 * 24 * 60 * 60 * 1000,
});

export const STATUSES = Object.freeze(['connected', 'disconnected', 'revoked']);

// {from, to} in epoch ms for "the last <range>" ending at `now` (both inclusive, as telemetryByDevice takes them).
export function rangeBounds(range, now) {
  const span = RANGES[range];
  if (span === undefined) {
    throw new Error(`unknown range ${range}; one of ${Object.keys(RANGES).join(', ')}`);
  }
  const to = Math.floor(now);
  return { from: to - span, to };
}

// Every page of a paged query: fetchPage(nextToken) -> {items, nextToken}. Stops at the last page, at
// `maxItems` (then truncated is true), or when the API hands back a token it already gave (a loop).
export async function fetchAllPages(fetchPage, { maxItems = 5000 } = {}) {
  const items = [];
  const seen = new Set();
  let token = null;
  let pages = 0;
  for (;;) {
    const page = await fetchPage(token);
    pages += 1;
    for (const item of page.items || []) {
      if (items.length >= maxItems) {
        return { items, truncated: true, pages };
      }
      items.push(item);
    }
    token = page.nextToken || null;
    if (!token) {
      return { items, truncated: false, pages };
    }
    if (items.length >= maxItems) {
      return { items, truncated: true, pages };
    }
    if (seen.has(token)) {
      throw new Error('the API returned the same nextToken twice');
    }
    seen.add(token);
  }
}

// Readings newest first, one per timestamp (a live event may repeat one already fetched), within
// [from, to] (to: null for open-ended, as a live chart is), at most maxItems.
export function mergeReadings(existing, incoming, { from = -Infinity, to = null, maxItems = 5000 } = {}) {
  const byTime = new Map();
  for (const reading of [...existing, ...incoming]) {
    if (!isReading(reading)) continue;
    if (reading.timestamp < from || (to !== null && reading.timestamp > to)) continue;
    byTime.set(reading.timestamp, reading);
  }
  return [...byTime.values()].sort((a, b) => b.timestamp - a.timestamp).slice(0, maxItems);
}

export function isReading(value) {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof value.device_id === 'string' &&
    Number.isFinite(value.timestamp) &&
    Number.isFinite(value.temperature) &&
    Number.isFinite(value.humidity)
  );
}

// The newest of the current latest reading and a new one (a late event never replaces a newer reading).
export function newerReading(current, candidate) {
  if (!isReading(candidate)) return current || null;
  if (!current || candidate.timestamp >= current.timestamp) return candidate;
  return current;
}

// Devices sorted by id after applying an onUpdateDevice event: fields the event has (non-null)
// replace the stored ones; a new device is added; revoked stays revoked.
export function applyDeviceUpdate(devices, update) {
  if (!update || typeof update.device_id !== 'string') return devices;
  const result = [];
  let found = false;
  for (const device of devices) {
    if (device.device_id !== update.device_id) {
      result.push(device);
      continue;
    }
    found = true;
    const merged = { ...device };
    for (const [key, value] of Object.entries(update)) {
      if (value !== null && value !== undefined) merged[key] = value;
    }
    if (device.status === 'revoked') merged.status = 'revoked';
    result.push(merged);
  }
  if (!found) result.push({ ...update });
  return sortDevices(result);
}

export function sortDevices(devices) {
  return [...devices].sort((a, b) => (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0));
}

// Subscription argument filters are not applied by every server (the AppSync simulator ignores
// them): keep only events of the devices shown.
export function isForDevice(event, deviceId) {
  return Boolean(event) && event.device_id === deviceId;
}

export function statusOf(device) {
  return STATUSES.includes(device && device.status) ? device.status : 'unknown';
}

// At most `maxPoints` points for the chart: readings averaged per equal time bucket, oldest first.
export function downsample(readings, maxPoints) {
  const sorted = [...readings].filter(isReading).sort((a, b) => a.timestamp - b.timestamp);
  if (sorted.length <= maxPoints || maxPoints < 1) return sorted;
  const first = sorted[0].timestamp;
  const span = sorted[sorted.length - 1].timestamp - first || 1;
  const buckets = new Map();
  for (const reading of sorted) {
    const index = Math.min(maxPoints - 1, Math.floor(((reading.timestamp - first) / span) * maxPoints));
    const bucket = buckets.get(index) || { t: 0, temperature: 0, humidity: 0, n: 0, device_id: reading.device_id };
    bucket.t += reading.timestamp;
    bucket.temperature += reading.temperature;
    bucket.humidity += reading.humidity;
    bucket.n += 1;
    buckets.set(index, bucket);
  }
  return [...buckets.keys()]
    .sort((a, b) => a - b)
    .map((index) => {
      const b = buckets.get(index);
      return {
        device_id: b.device_id,
        timestamp: Math.round(b.t / b.n),
        temperature: b.temperature / b.n,
        humidity: b.humidity / b.n,
      };
    });
}

// Nice axis bounds and ticks for values (min/max padded, at least `minSpan` wide).

// Decimals that show every tick of a step exactly (2.5 -> 1, 0.25 -> 2, 5 -> 0).
export function tickDigits(step) {
  for (let digits = 0; digits < 6; digits += 1) {
    if (Math.abs(Math.round(step * 10 ** digits) - step * 10 ** digits) < 1e-9) return digits;
  }
  return 6;
}

export function axisTicks(values, { count = 5, minSpan = 1 } = {}) {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return { min: 0, max: 1, ticks: [0, 1], step: 1 };
  let min = Math.min(...finite);
  let max = Math.max(...finite);
  if (max - min < minSpan) {
    const middle = (max + min) / 2;
    min = middle - minSpan / 2;
    max = middle + minSpan / 2;
  }
  const rough = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((s) => s >= rough);
  const low = Math.floor(min / step) * step;
  const high = Math.ceil(max / step) * step;
  const ticks = [];
  for (let value = low; value <= high + step / 1000; value += step) {
    ticks.push(Number(value.toFixed(6)));
  }
  return { min: low, max: high, ticks, step };
}

export function formatNumber(value, digits = 1) {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// Local time "YYYY-MM-DD HH:MM:SS" (the seed's format).
export function formatTime(ms) {
  if (!Number.isFinite(ms)) return 'never';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago"; "never" without a time.
export function formatAge(ms, now) {
  if (!Number.isFinite(ms)) return 'never';
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}
