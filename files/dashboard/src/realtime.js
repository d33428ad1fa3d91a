// AppSync real-time subscriptions over WebSocket, as AWS AppSync speaks them (and the Amplify
// AppSync simulator, which implements the same messages):
//   wss://<realtime host>/graphql?header=<base64 JSON auth>&payload=e30=   subprotocol "graphql-ws"
//   -> connection_init            <- connection_ack {connectionTimeoutMs}   <- ka (keep-alive)
//   -> start {id, payload: {data: JSON {query, variables}, extensions: {authorization}}}
//   <- start_ack / data {payload: {data}} / error     -> stop {id}   <- complete
// Only subscriptions go through here; the client has no way to send a mutation.

const DEFAULT_TIMEOUT_MS = 5 * 60 * 1000;

function base64(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

// The real-time endpoint: config.realtimeUrl, else derived from the GraphQL URL as AWS names it
// (appsync-api -> appsync-realtime-api, https -> wss); a local URL keeps its host (http -> ws).
export function realtimeUrl(config) {
  if (config.realtimeUrl) return config.realtimeUrl;
  const url = new URL(config.graphqlUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hostname = url.hostname.replace('.appsync-api.', '.appsync-realtime-api.');
  if (!url.pathname.endsWith('/realtime') && !url.hostname.includes('appsync-realtime-api')) {
    url.pathname = `${url.pathname.replace(/\/$/, '')}/realtime`;
  }
  return url.toString();
}

// The authorization object AppSync expects for API_KEY: the GraphQL host and the key.
export function authorization(config) {
  if ((config.authMode || 'API_KEY') !== 'API_KEY') {
    throw new Error(`auth mode ${config.authMode} is not supported by the dashboard; use API_KEY`);
  }
  return { host: new URL(config.graphqlUrl).host, 'x-api-key': config.apiKey };
}

export function connectionUrl(config) {
  const url = new URL(realtimeUrl(config));
  url.searchParams.set('header', base64(JSON.stringify(authorization(config))));
  url.searchParams.set('payload', base64('{}'));
  return url.toString();
}

export function startMessage(id, query, variables, config) {
  if (!/^\s*subscription\b/.test(query)) {
    throw new Error('only subscriptions go over the real-time connection');
  }
  return {
    id,
    type: 'start',
    payload: {
      data: JSON.stringify({ query, variables: variables || {} }),
      extensions: { authorization: authorization(config) },
    },
  };
}

// How long to wait for a keep-alive before the connection counts as lost.
export function keepAliveTimeout(ackPayload) {
  const value = ackPayload && (ackPayload.connectionTimeoutMs ?? ackPayload.connectionTimeout);
  return Number.isFinite(value) && value > 0 ? value : DEFAULT_TIMEOUT_MS;
}

// Reconnect delays: 1 s, 2 s, 4 s ... at most 30 s.
export function backoff(attempt) {
  return Math.min(30000, 1000 * 2 ** Math.max(0, attempt));
}

// One connection with any number of subscriptions; reconnects (and restarts them) when it drops.
// onState(state, detail) hears 'connecting', 'connected', 'disconnected' (with the error).
export class RealtimeClient {
  constructor(config, { WebSocketImpl = globalThis.WebSocket, onState = () => {}, timers = globalThis } = {}) {
    this.config = config;
    this.WebSocketImpl = WebSocketImpl;
    this.onState = onState;
    this.timers = timers;
    this.subscriptions = new Map();
    this.nextId = 1;
    this.socket = null;
    this.acked = false;
    this.attempt = 0;
    this.closed = false;
    this.kaTimer = null;
    this.retryTimer = null;
  }

  subscribe(query, variables, onData, onError = () => {}) {
    const id = `sub-${this.nextId++}`;
    const message = startMessage(id, query, variables, this.config);
    this.subscriptions.set(id, { message, onData, onError });
    if (this.acked) this.send(message);
    else if (!this.socket) this.connect();
    return () => this.unsubscribe(id);
  }

  unsubscribe(id) {
    if (this.subscriptions.delete(id) && this.acked) this.send({ id, type: 'stop' });
  }

  connect() {
    if (this.closed) return;
    this.onState('connecting');
    let socket;
    try {
      socket = new this.WebSocketImpl(connectionUrl(this.config), ['graphql-ws']);
    } catch (error) {
      this.lost(error);
      return;
    }
    this.socket = socket;
    this.acked = false;
    socket.onopen = () => this.send({ type: 'connection_init' });
    socket.onmessage = (event) => this.receive(event.data);
    socket.onerror = () => {};
    socket.onclose = (event) => {
      if (this.socket === socket) this.lost(new Error(`connection closed (${event && event.code})`));
    };
  }

  send(message) {
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(message));
  }

  receive(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    const subscription = message.id ? this.subscriptions.get(message.id) : null;
    switch (message.type) {
      case 'connection_ack':
        this.acked = true;
        this.attempt = 0;
        this.kaTimeout = keepAliveTimeout(message.payload);
        this.armKeepAlive();
        for (const sub of this.subscriptions.values()) this.send(sub.message);
        this.onState('connected');
        break;
      case 'ka':
        this.armKeepAlive();
        break;
      case 'data':
        if (subscription && message.payload) subscription.onData(message.payload.data || {});
        break;
      case 'error':
      case 'connection_error':
        if (subscription) subscription.onError(errorText(message.payload));
        else this.lost(new Error(errorText(message.payload)));
        break;
      default:
        break; // start_ack, complete
    }
  }

  armKeepAlive() {
    this.timers.clearTimeout(this.kaTimer);
    this.kaTimer = this.timers.setTimeout(() => this.lost(new Error('no keep-alive from the server')), this.kaTimeout);
  }

  lost(error) {
    const socket = this.socket;
    this.socket = null;
    this.acked = false;
    this.timers.clearTimeout(this.kaTimer);
    if (socket) {
      socket.onclose = null;
      try {
        socket.close();
      } catch {
        // already closed
      }
    }
    if (this.closed) return;
    this.onState('disconnected', error);
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = this.timers.setTimeout(() => this.connect(), backoff(this.attempt++));
  }

  close() {
    this.closed = true;
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.kaTimer);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close();
    }
    this.socket = null;
  }
}

export function errorText(payload) {
  if (!payload) return 'unknown error';
  const errors = payload.errors || (Array.isArray(payload) ? payload : null);
  if (errors && errors.length) return errors.map((e) => e.message || e.errorType || String(e)).join('; ');
  return payload.message || JSON.stringify(payload);
}
