// GraphQL queries over HTTPS with the API key. Read-only by construction: `query` refuses any
// document that is not a query (the API key may not mutate anyway; the page never tries).

import { fetchAllPages } from './logic.js';

const DEVICE_FIELDS = 'device_id owner location status last_seen revoked_at';
const TELEMETRY_FIELDS = 'device_id timestamp temperature humidity';

export const LIST_DEVICES = `query ListDevices($limit: Int, $nextToken: String) {
  listDevices(limit: $limit, nextToken: $nextToken) { items { ${DEVICE_FIELDS} } nextToken }
}`;

export const TELEMETRY_BY_DEVICE = `query TelemetryByDevice($device_id: ID!, $from: Float, $to: Float, $limit: Int, $nextToken: String) {
  telemetryByDevice(device_id: $device_id, from: $from, to: $to, limit: $limit, nextToken: $nextToken) {
    items { ${TELEMETRY_FIELDS} } nextToken
  }
}`;

export const ON_CREATE_TELEMETRY = `subscription OnCreateTelemetry {
  onCreateTelemetry { ${TELEMETRY_FIELDS} }
}`;

export const ON_UPDATE_DEVICE = `subscription OnUpdateDevice {
  onUpdateDevice { ${DEVICE_FIELDS} }
}`;

export class ApiError extends Error {}

// What the page needs from config.json; throws naming what is missing.
export function checkConfig(config) {
  if (!config || typeof config !== 'object') throw new ApiError('config.json is missing or not a JSON object');
  for (const key of ['graphqlUrl', 'apiKey']) {
    if (typeof config[key] !== 'string' || !config[key]) throw new ApiError(`config.json has no ${key}`);
  }
  if ((config.authMode || 'API_KEY') !== 'API_KEY') {
    throw new ApiError(`config.json: auth mode ${config.authMode} is not supported; use API_KEY`);
  }
  return config;
}

export function createApi(config, fetchImpl = globalThis.fetch.bind(globalThis)) {
  async function query(document, variables = {}) {
    if (!/^\s*query\b/.test(document)) throw new ApiError('the dashboard only runs queries');
    let response;
    try {
      response = await fetchImpl(config.graphqlUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'x-api-key': config.apiKey },
        body: JSON.stringify({ query: document, variables }),
      });
    } catch (error) {
      throw new ApiError(`cannot reach the GraphQL API at ${config.graphqlUrl} (${error.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.errors ? body.errors.map((e) => e.message).join('; ') : response.statusText;
      throw new ApiError(`the GraphQL API answered HTTP ${response.status}: ${detail}`);
    }
    if (!body) throw new ApiError('the GraphQL API answered something that is not JSON');
    if (body.errors && body.errors.length) {
      throw new ApiError(`GraphQL error: ${body.errors.map((e) => e.message).join('; ')}`);
    }
    return body.data;
  }

  return {
    query,
    async listDevices({ pageSize = 100, maxItems = 10000 } = {}) {
      const result = await fetchAllPages(
        async (nextToken) => (await query(LIST_DEVICES, { limit: pageSize, nextToken })).listDevices,
        { maxItems },
      );
      return result.items;
    },
    async telemetry(deviceId, { from, to, pageSize = 500, maxItems = 5000 } = {}) {
      return fetchAllPages(
        async (nextToken) =>
          (await query(TELEMETRY_BY_DEVICE, { device_id: deviceId, from, to, limit: pageSize, nextToken }))
            .telemetryByDevice,
        { maxItems },
      );
    },
    async latestReading(deviceId) {
      const data = await query(TELEMETRY_BY_DEVICE, { device_id: deviceId, limit: 1 });
      return data.telemetryByDevice.items[0] || null;
    },
  };
}
