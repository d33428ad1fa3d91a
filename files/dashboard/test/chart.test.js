import assert from 'node:assert/strict';
import { test } from 'node:test';

import { chartSvg, seriesPoints } from '../src/chart.js';

test('seriesPoints maps time to x and value to y (higher values higher up)', () => {
  const frame = { x0: 0, x1: 100, y0: 0, y1: 50, from: 0, to: 10, min: 0, max: 10 };
  const points = [
    { timestamp: 0, temperature: 0 },
    { timestamp: 10, temperature: 10 },
  ];
  assert.equal(seriesPoints(points, 'temperature', frame), '0.0,50.0 100.0,0.0');
});

test('chartSvg draws both series, or none without readings', () => {
  const readings = [1, 2, 3].map((i) => ({ device_id: 'A', timestamp: i * 1000, temperature: 20 + i, humidity: 40 + i }));
  const svg = chartSvg(readings, { from: 0, to: 4000 });
  assert.match(svg, /<polyline class="series temperature"[^>]* points="[\d., ]+"/);
  assert.match(svg, /<polyline class="series humidity"/);
  assert.equal(svg.match(/<circle class="dot temperature"/g).length, 3, 'few readings get a dot each');
  assert.doesNotMatch(chartSvg([], { from: 0, to: 4000 }), /polyline/);
  const many = Array.from({ length: 100 }, (_, i) => ({ device_id: 'A', timestamp: i, temperature: 20, humidity: 40 }));
  assert.doesNotMatch(chartSvg(many, { from: 0, to: 100 }), /<circle/);
});
