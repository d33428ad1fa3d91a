import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RealtimeClient, backoff, connectionUrl, keepAliveTimeout, realtimeUrl, startMessage } from '../src/realtime.js';

const LOCAL = { graphqlUrl: 'http://127.0.0.1:4600/graphql', apiKey: 'da2-key', authMode: 'API_KEY' };
const AWS = { graphqlUrl: 'https://abc.appsync-api.eu-north-1.amazonaws.com/graphql', apiKey: 'da2-key' };

test('realtime URLs as AppSync and the simulator name them', () => {
  assert.equal(realtimeUrl(AWS), 'wss://abc.appsync-realtime-api.eu-north-1.amazonaws.com/graphql');
  assert.equal(realtimeUrl(LOCAL), 'ws://127.0.0.1:4600/graphql/realtime');
  assert.equal(realtimeUrl({ ...LOCAL, realtimeUrl: 'ws://x/y' }), 'ws://x/y');
});

test('the connection URL carries the base64 auth header and an empty payload', () => {
  const url = new URL(connectionUrl(AWS));
  const header = JSON.parse(Buffer.from(url.searchParams.get('header'), 'base64').toString());
  assert.deepEqual(header, { host: 'abc.appsync-api.eu-north-1.amazonaws.com', 'x-api-key': 'da2-key' });
  assert.equal(url.searchParams.get('payload'), 'e30=');
  assert.throws(() => connectionUrl({ ...AWS, authMode: 'AWS_IAM' }), /not supported/);
});

test('start messages carry the query as a JSON string and refuse anything but a subscription', () => {
  const message = startMessage('sub-1', 'subscription S { onCreateTelemetry { device_id } }', { a: 1 }, LOCAL);
  assert.equal(message.type, 'start');
  assert.deepEqual(JSON.parse(message.payload.data), {
    query: 'subscription S { onCreateTelemetry { device_id } }',
    variables: { a: 1 },
  });
  assert.deepEqual(message.payload.extensions.authorization, { host: '127.0.0.1:4600', 'x-api-key': 'da2-key' });
  assert.throws(() => startMessage('x', 'mutation M { revokeDevice }', {}, LOCAL), /only subscriptions/);
});

test('keep-alive timeout from either ack shape; backoff grows to 30 s', () => {
  assert.equal(keepAliveTimeout({ connectionTimeoutMs: 300000 }), 300000);
  assert.equal(keepAliveTimeout({ connectionTimeout: 1000 }), 1000);
  assert.equal(keepAliveTimeout({}), 300000);
  assert.deepEqual([0, 1, 2, 10].map(backoff), [1000, 2000, 4000, 30000]);
});

class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 1;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  serverSays(message) {
    this.onmessage({ data: JSON.stringify(message) });
  }
}

function fakeTimers() {
  const pending = new Map();
  let next = 1;
  return {
    pending,
    setTimeout(fn, ms) {
      pending.set(next, { fn, ms });
      return next++;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    fire(ms) {
      for (const [id, timer] of [...pending]) {
        if (timer.ms === ms) {
          pending.delete(id);
          timer.fn();
        }
      }
    },
  };
}

test('client: init, ack, start, data to the right handler, stop on unsubscribe', () => {
  FakeSocket.all = [];
  const states = [];
  const timers = fakeTimers();
  const client = new RealtimeClient(LOCAL, { WebSocketImpl: FakeSocket, timers, onState: (s) => states.push(s) });
  const got = [];
  const stop = client.subscribe('subscription A { a }', {}, (data) => got.push(['a', data]));
  client.subscribe('subscription B { b }', {}, (data) => got.push(['b', data]));
  assert.equal(FakeSocket.all.length, 1);
  const socket = FakeSocket.all[0];
  assert.deepEqual(socket.protocols, ['graphql-ws']);
  socket.onopen();
  assert.deepEqual(socket.sent, [{ type: 'connection_init' }]);
  socket.serverSays({ type: 'connection_ack', payload: { connectionTimeoutMs: 5000 } });
  assert.deepEqual(
    socket.sent.slice(1).map((m) => [m.type, m.id]),
    [
      ['start', 'sub-1'],
      ['start', 'sub-2'],
    ],
  );
  socket.serverSays({ type: 'start_ack', id: 'sub-1' });
  socket.serverSays({ type: 'data', id: 'sub-2', payload: { data: { b: 1 } } });
  assert.deepEqual(got, [['b', { b: 1 }]]);
  stop();
  assert.deepEqual(socket.sent.at(-1), { id: 'sub-1', type: 'stop' });
  assert.deepEqual(states, ['connecting', 'connected']);
});

test('client: a missing keep-alive reconnects and restarts the subscriptions', () => {
  FakeSocket.all = [];
  const states = [];
  const timers = fakeTimers();
  const client = new RealtimeClient(LOCAL, { WebSocketImpl: FakeSocket, timers, onState: (s) => states.push(s) });
  client.subscribe('subscription A { a }', {}, () => {});
  const first = FakeSocket.all[0];
  first.onopen();
  first.serverSays({ type: 'connection_ack', payload: { connectionTimeoutMs: 5000 } });
  first.serverSays({ type: 'ka' });
  timers.fire(5000);
  assert.equal(first.readyState, 3);
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected']);
  timers.fire(1000); // first retry after 1 s
  const second = FakeSocket.all[1];
  second.onopen();
  second.serverSays({ type: 'connection_ack', payload: {} });
  assert.deepEqual(
    second.sent.map((m) => m.type),
    ['connection_init', 'start'],
  );
  client.close();
  assert.equal(second.readyState, 3);
});
