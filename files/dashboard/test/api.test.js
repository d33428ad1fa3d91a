import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkConfig, createApi } from '../src/api.js';

const CONFIG = { graphqlUrl: 'http://127.0.0.1:4600/graphql', apiKey: 'da2-key' };

function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url, options) => {
    const body = JSON.parse(options.body);
    calls.push({ url, headers: options.headers, body });
    const answer = answers(body);
    if (answer instanceof Error) throw answer;
    return { ok: answer.status === undefined, status: answer.status || 200, statusText: 'x', json: async () => answer };
  };
  return { fetch, calls };
}

test('telemetry pages through nextToken with the range and the API key', async () => {
  const { fetch, calls } = fakeFetch(({ variables }) => ({
    data: {
      telemetryByDevice: variables.nextToken
        ? { items: [{ timestamp: 1 }], nextToken: null }
        : { items: [{ timestamp: 3 }, { timestamp: 2 }], nextToken: 'n1' },
    },
  }));
  const result = await createApi(CONFIG, fetch).telemetry('AA', { from: 10, to: 20, pageSize: 2 });
  assert.deepEqual(result.items.map((i) => i.timestamp), [3, 2, 1]);
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[1].body.variables, { device_id: 'AA', from: 10, to: 20, limit: 2, nextToken: 'n1' });
  assert.equal(calls[0].headers['x-api-key'], 'da2-key');
  assert.match(calls[0].body.query, /^query TelemetryByDevice/);
});

test('errors: unreachable, HTTP status, GraphQL errors; mutations are refused', async () => {
  const down = createApi(CONFIG, fakeFetch(() => new TypeError('Failed to fetch')).fetch);
  await assert.rejects(down.listDevices(), /cannot reach the GraphQL API at http:\/\/127.0.0.1:4600\/graphql/);
  const denied = createApi(CONFIG, fakeFetch(() => ({ status: 401, errors: [{ message: 'bad key' }] })).fetch);
  await assert.rejects(denied.listDevices(), /HTTP 401: bad key/);
  const failing = createApi(CONFIG, fakeFetch(() => ({ data: null, errors: [{ message: 'boom' }] })).fetch);
  await assert.rejects(failing.latestReading('AA'), /GraphQL error: boom/);
  const { fetch, calls } = fakeFetch(() => ({ data: {} }));
  await assert.rejects(createApi(CONFIG, fetch).query('mutation { revokeDevice(device_id: "A") { device_id } }'), /only runs queries/);
  assert.equal(calls.length, 0);
});

test('checkConfig names what is missing', () => {
  assert.throws(() => checkConfig(null), /missing/);
  assert.throws(() => checkConfig({ graphqlUrl: 'x' }), /no apiKey/);
  assert.throws(() => checkConfig({ ...CONFIG, authMode: 'AMAZON_COGNITO_USER_POOLS' }), /not supported/);
  assert.equal(checkConfig(CONFIG), CONFIG);
});
