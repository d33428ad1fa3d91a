import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  RANGES,
  applyDeviceUpdate,
  axisTicks,
  tickDigits,
  downsample,
  fetchAllPages,
  formatAge,
  isForDevice,
  mergeReadings,
  newerReading,
  rangeBounds,
  statusOf,
} from '../src/logic.js';

const reading = (timestamp, temperature = 21.5, humidity = 40, device_id = 'AA') => ({
  device_id,
  timestamp,
  temperature,
  humidity,
});

test('rangeBounds: the last hour, day and week end now', () => {
  const now = 1_700_000_000_000;
  assert.deepEqual(rangeBounds('hour', now), { from: now - 3_600_000, to: now });
  assert.deepEqual(rangeBounds('day', now), { from: now - 86_400_000, to: now });
  assert.equal(rangeBounds('week', now + 0.7).from, now - 7 * 86_400_000);
  assert.deepEqual(Object.keys(RANGES), ['hour', 'day', 'week']);
  assert.throws(() => rangeBounds('month', now), /unknown range month/);
});

test('fetchAllPages follows nextToken to the last page', async () => {
  const pages = { null: { items: [1, 2], nextToken: 'a' }, a: { items: [3], nextToken: 'b' }, b: { items: [4] } };
  const asked = [];
  const result = await fetchAllPages(async (token) => {
    asked.push(token);
    return pages[String(token)];
  });
  assert.deepEqual(result, { items: [1, 2, 3, 4], truncated: false, pages: 3 });
  assert.deepEqual(asked, [null, 'a', 'b']);
});

test('fetchAllPages stops at maxItems and says so', async () => {
  let calls = 0;
  const result = await fetchAllPages(
    async () => {
      calls += 1;
      return { items: [calls * 10, calls * 10 + 1], nextToken: `t${calls}` };
    },
    { maxItems: 3 },
  );
  assert.deepEqual(result.items, [10, 11, 20]);
  assert.equal(result.truncated, true);
  assert.equal(calls, 2);
});

test('fetchAllPages: an empty page with no token ends; a repeated token is an error', async () => {
  assert.deepEqual(await fetchAllPages(async () => ({ items: [], nextToken: null })), {
    items: [],
    truncated: false,
    pages: 1,
  });
  await assert.rejects(
    fetchAllPages(async () => ({ items: [1], nextToken: 'same' })),
    /same nextToken twice/,
  );
});

test('mergeReadings: newest first, one per timestamp, within the range', () => {
  const fetched = [reading(300), reading(200), reading(100)];
  const live = [reading(400), reading(300, 30), { device_id: 'AA', timestamp: 500 }];
  const merged = mergeReadings(fetched, live, { from: 150 });
  assert.deepEqual(
    merged.map((r) => [r.timestamp, r.temperature]),
    [
      [400, 21.5],
      [300, 30],
      [200, 21.5],
    ],
  );
  assert.deepEqual(
    mergeReadings(fetched, [], { to: 250, maxItems: 1 }).map((r) => r.timestamp),
    [200],
  );
});

test('newerReading keeps the newest reading', () => {
  assert.equal(newerReading(null, reading(1)).timestamp, 1);
  assert.equal(newerReading(reading(5), reading(3)).timestamp, 5);
  assert.equal(newerReading(reading(5), reading(7)).timestamp, 7);
  assert.equal(newerReading(reading(5), { device_id: 'AA' }).timestamp, 5);
});

test('applyDeviceUpdate merges non-null fields, adds new devices, keeps revoked', () => {
  const devices = [
    { device_id: 'B', owner: 'bob', status: 'connected', location: 'lab' },
    { device_id: 'C', status: 'revoked' },
  ];
  let next = applyDeviceUpdate(devices, { device_id: 'B', status: 'disconnected', owner: null, last_seen: 9 });
  assert.deepEqual(next[0], { device_id: 'B', owner: 'bob', status: 'disconnected', location: 'lab', last_seen: 9 });
  next = applyDeviceUpdate(next, { device_id: 'C', status: 'connected' });
  assert.equal(next[1].status, 'revoked');
  next = applyDeviceUpdate(next, { device_id: 'A', status: 'connected' });
  assert.deepEqual(
    next.map((d) => d.device_id),
    ['A', 'B', 'C'],
  );
  assert.equal(devices[0].status, 'connected', 'the input is not modified');
  assert.equal(applyDeviceUpdate(devices, null), devices);
});

test('client-side filtering and status names', () => {
  assert.equal(isForDevice(reading(1, 1, 1, 'AA'), 'AA'), true);
  assert.equal(isForDevice(reading(1, 1, 1, 'BB'), 'AA'), false);
  assert.equal(statusOf({ status: 'revoked' }), 'revoked');
  assert.equal(statusOf({ status: null }), 'unknown');
});

test('downsample averages per time bucket, oldest first', () => {
  const readings = Array.from({ length: 100 }, (_, i) => reading(i * 1000, i, 100 - i));
  const points = downsample(readings, 10);
  assert.equal(points.length, 10);
  assert.ok(points.every((p, i) => i === 0 || p.timestamp > points[i - 1].timestamp));
  assert.equal(points[0].temperature, 4.5);
  assert.equal(points[0].humidity, 95.5);
  assert.deepEqual(downsample([reading(2), reading(1)], 10).map((r) => r.timestamp), [1, 2]);
});

test('axisTicks covers the values with round steps', () => {
  const axis = axisTicks([21.3, 24.8]);
  assert.ok(axis.min <= 21.3 && axis.max >= 24.8);
  assert.deepEqual(axis.ticks, [21, 22, 23, 24, 25]);
  const flat = axisTicks([20, 20], { minSpan: 2 });
  assert.ok(flat.min <= 19 && flat.max >= 21);
});

test('tickDigits shows each step exactly', () => {
  assert.deepEqual([5, 2.5, 0.25, 1, 0.1].map(tickDigits), [0, 1, 2, 0, 1]);
});

test('formatAge', () => {
  assert.equal(formatAge(null, 0), 'never');
  assert.equal(formatAge(1000, 3000), 'just now');
  assert.equal(formatAge(0, 42_000), '42 s ago');
  assert.equal(formatAge(0, 5 * 60_000), '5 min ago');
  assert.equal(formatAge(0, 3 * 3_600_000), '3 h ago');
});
