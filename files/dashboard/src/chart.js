// A small SVG line chart: temperature (left axis, °C) and humidity (right axis, %RH) over time.
// Returns markup built from numbers only (no text from the API), so it is safe for innerHTML.

import { axisTicks, downsample, formatNumber, tickDigits } from './logic.js';

const COLORS = { temperature: '#e0455f', humidity: '#2f9e6e' };
const MARKERS_UP_TO = 60;

function timeLabel(ms, span) {
  const d = new Date(ms);
  const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  if (span <= 24 * 3600 * 1000) return hm;
  return `${String(d.getDate()).padStart(2, '0')}/${String(d.getMonth() + 1).padStart(2, '0')} ${hm}`;
}

// Coordinates of the polyline of one series: "x,y x,y ..." with x from time and y from value.
export function seriesPoints(points, key, { x0, x1, y0, y1, from, to, min, max }) {
  const span = to - from || 1;
  const range = max - min || 1;
  return points
    .map((p) => {
      const x = x0 + ((p.timestamp - from) / span) * (x1 - x0);
      const y = y1 - ((p[key] - min) / range) * (y1 - y0);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}

export function chartSvg(readings, { from, to, width = 640, height = 260, maxPoints = 300 } = {}) {
  const points = downsample(readings, maxPoints);
  const margin = { left: 44, right: 44, top: 24, bottom: 28 };
  const box = { x0: margin.left, x1: width - margin.right, y0: margin.top, y1: height - margin.bottom };
  const temperature = axisTicks(points.map((p) => p.temperature), { minSpan: 2 });
  const humidity = axisTicks(points.map((p) => p.humidity), { minSpan: 10 });
  const start = Number.isFinite(from) ? from : points.length ? points[0].timestamp : 0;
  const end = Number.isFinite(to) ? to : points.length ? points[points.length - 1].timestamp : 1;
  const parts = [
    `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="Temperature and humidity chart" preserveAspectRatio="none">`,
  ];
  for (const tick of temperature.ticks) {
    const y = box.y1 - ((tick - temperature.min) / (temperature.max - temperature.min || 1)) * (box.y1 - box.y0);
    parts.push(`<line class="grid" x1="${box.x0}" x2="${box.x1}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}"/>`);
    parts.push(`<text class="axis t" x="${box.x0 - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${formatNumber(tick, tickDigits(temperature.step))}</text>`);
  }
  for (const tick of humidity.ticks) {
    const y = box.y1 - ((tick - humidity.min) / (humidity.max - humidity.min || 1)) * (box.y1 - box.y0);
    parts.push(`<text class="axis h" x="${box.x1 + 6}" y="${(y + 4).toFixed(1)}">${formatNumber(tick, tickDigits(humidity.step))}</text>`);
  }
  for (let i = 0; i <= 4; i += 1) {
    const t = start + ((end - start) * i) / 4;
    const x = box.x0 + ((box.x1 - box.x0) * i) / 4;
    const anchor = i === 0 ? 'start' : i === 4 ? 'end' : 'middle';
    parts.push(`<text class="axis x" x="${x.toFixed(1)}" y="${height - 8}" text-anchor="${anchor}">${timeLabel(t, end - start)}</text>`);
  }
  parts.push(`<text class="legend" x="${box.x0}" y="14" fill="${COLORS.temperature}">● Temperature °C</text>`);
  parts.push(`<text class="legend" x="${box.x1}" y="14" text-anchor="end" fill="${COLORS.humidity}">● Humidity %RH</text>`);
  if (points.length) {
    const frame = { ...box, from: start, to: end };
    const t = seriesPoints(points, 'temperature', { ...frame, min: temperature.min, max: temperature.max });
    const h = seriesPoints(points, 'humidity', { ...frame, min: humidity.min, max: humidity.max });
    parts.push(`<polyline class="series temperature" fill="none" stroke="${COLORS.temperature}" stroke-width="2" points="${t}"/>`);
    parts.push(`<polyline class="series humidity" fill="none" stroke="${COLORS.humidity}" stroke-width="2" points="${h}"/>`);
    // Few readings (a device that just started): dots too, so that each one is visible.
    if (points.length <= MARKERS_UP_TO) {
      for (const [key, coords] of [['temperature', t], ['humidity', h]]) {
        for (const xy of coords.split(' ')) {
          const [x, y] = xy.split(',');
          parts.push(`<circle class="dot ${key}" cx="${x}" cy="${y}" r="3" fill="${COLORS[key]}"/>`);
        }
      }
    }
  }
  parts.push('</svg>');
  return parts.join('');
}
