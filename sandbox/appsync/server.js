'use strict';
// The GraphQL endpoint of the sandbox: the AWS Amplify AppSync simulator serving the API that is
// provisioned in moto. It polls the sandbox's GET /iotfleet-sandbox/appsync/apis and, when the
// served API (the newest one with a schema) or anything of it changes, loads
// GET /iotfleet-sandbox/appsync/<apiId>/config: schema, data sources, resolvers, functions, auth
// modes and API keys. DynamoDB data sources use moto's DynamoDB, Lambda data sources moto's Lambda.
//
//   node server.js --port 4600 --sandbox http://127.0.0.1:4599 [--host 127.0.0.1] [--interval 1000]
//
// Own endpoint: GET /iotfleet-sandbox/health -> {status, pid, port, sandbox, apiId, etag, loadedAt, error}.

const { AmplifyAppSyncSimulator } = require('@aws-amplify/amplify-appsync-simulator');
const authMode = require('@aws-amplify/amplify-appsync-simulator/lib/utils/auth-helpers/current-auth-mode');

const HEALTH_PATH = '/iotfleet-sandbox/health';
const PLACEHOLDER_SCHEMA = 'type Query {\n  sandbox: String\n}\n';
const DEFAULT_RESPONSE = '$util.toJson($ctx.result)';
const DEFAULT_LAMBDA_REQUEST = `{
  "version": "2018-05-29",
  "operation": "Invoke",
  "payload": {
    "arguments": $util.toJson($ctx.arguments),
    "identity": $util.toJson($ctx.identity),
    "source": $util.toJson($ctx.source),
    "info": {"fieldName": "$ctx.info.fieldName", "parentTypeName": "$ctx.info.parentTypeName"}
  }
}`;

function parseArgs(argv) {
  const args = { host: '127.0.0.1', interval: 1000 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    args[name] = argv[i + 1];
  }
  args.port = Number(args.port);
  args.interval = Number(args.interval);
  if (!args.port || !args.sandbox) {
    console.error('usage: node server.js --port N --sandbox http://127.0.0.1:PORT [--host H] [--interval MS]');
    process.exit(2);
  }
  args.sandbox = args.sandbox.replace(/\/+$/, '');
  return args;
}

const args = parseArgs(process.argv.slice(2));
const state = { apiId: null, etag: null, loadedAt: null, error: null, keys: [], sandboxReachable: null };

// AppSync accepts every unexpired key of the API (they overlap while a key is renewed); the
// simulator knows one key. Map a valid key onto that one, and anything else onto a refused value.
const originalGetAuthorizationMode = authMode.getAuthorizationMode;
authMode.getAuthorizationMode = (headers, appSyncConfig) => {
  const name = Object.keys(headers || {}).find((header) => header.toLowerCase() === 'x-api-key');
  if (name && appSyncConfig) {
    const value = Array.isArray(headers[name]) ? headers[name][0] : headers[name];
    const now = Date.now() / 1000;
    const valid = state.keys.some((key) => key.id === value && key.expires > now);
    headers = { ...headers, [name]: valid ? appSyncConfig.apiKey : `refused:${value}` };
  }
  return originalGetAuthorizationMode(headers, appSyncConfig);
};

function lambdaInvoker(functionArn) {
  const region = functionArn.split(':')[3] || 'us-east-1';
  return async (payload) => {
    const date = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    const response = await fetch(`${args.sandbox}/2015-03-31/functions/${encodeURIComponent(functionArn)}/invocations`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        // moto routes by the credential scope and does not check the signature.
        Authorization: `AWS4-HMAC-SHA256 Credential=testing/${date}/${region}/lambda/aws4_request, SignedHeaders=host, Signature=0`,
      },
      body: JSON.stringify(payload === undefined ? null : payload),
    });
    const text = await response.text();
    if (!response.ok) {
      throw new Error(`Lambda ${functionArn}: HTTP ${response.status}: ${text}`);
    }
    const result = text ? JSON.parse(text) : null;
    if (response.headers.get('x-amz-function-error')) {
      const error = new Error((result && result.errorMessage) || text);
      error.extensions = { errorType: 'Lambda:Unhandled' };
      throw error;
    }
    return result;
  };
}

function authProvider(provider) {
  const result = { authenticationType: provider.authenticationType };
  if (provider.openIDConnectConfig) {
    result.openIDConnectConfig = {
      Issuer: provider.openIDConnectConfig.issuer,
      ClientId: provider.openIDConnectConfig.clientId,
    };
  }
  if (provider.userPoolConfig) {
    result.cognitoUserPoolConfig = { AppIdClientRegex: provider.userPoolConfig.appIdClientRegex };
  }
  if (provider.lambdaAuthorizerConfig) {
    result.lambdaAuthorizerConfig = {
      AuthorizerUri: provider.lambdaAuthorizerConfig.authorizerUri,
      AuthorizerResultTtlInSeconds: provider.lambdaAuthorizerConfig.authorizerResultTtlInSeconds,
    };
  }
  return result;
}

// The simulator's configuration for the API as the sandbox describes it; `problems` lists what it cannot run.
function simulatorConfig(api) {
  const problems = [];
  const dataSources = [];
  for (const source of api.dataSources) {
    if (source.type === 'AMAZON_DYNAMODB') {
      dataSources.push({
        type: 'AMAZON_DYNAMODB',
        name: source.name,
        config: {
          endpoint: args.sandbox,
          region: source.dynamodbConfig.awsRegion,
          credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
          tableName: source.dynamodbConfig.tableName,
        },
      });
    } else if (source.type === 'AWS_LAMBDA') {
      dataSources.push({ type: 'AWS_LAMBDA', name: source.name, invoke: lambdaInvoker(source.lambdaConfig.lambdaFunctionArn) });
    } else if (source.type === 'NONE') {
      dataSources.push({ type: 'NONE', name: source.name });
    } else {
      problems.push(`data source ${source.name}: type ${source.type} is not simulated`);
    }
  }
  const types = new Map(dataSources.map((source) => [source.name, source.type]));
  const defaultRequest = (name) => (types.get(name) === 'AWS_LAMBDA' ? DEFAULT_LAMBDA_REQUEST : undefined);

  const mappingTemplates = [];
  const functions = [];
  for (const fn of api.functions) {
    if (fn.code || !types.has(fn.dataSourceName)) {
      problems.push(`function ${fn.name}: ${fn.code ? 'APPSYNC_JS is not simulated' : `no data source ${fn.dataSourceName}`}`);
      continue;
    }
    const base = `functions/${fn.functionId}`;
    mappingTemplates.push({ path: `${base}/request.vtl`, content: fn.requestMappingTemplate || defaultRequest(fn.dataSourceName) || '{}' });
    mappingTemplates.push({ path: `${base}/response.vtl`, content: fn.responseMappingTemplate || DEFAULT_RESPONSE });
    functions.push({
      name: fn.functionId,
      dataSourceName: fn.dataSourceName,
      requestMappingTemplateLocation: `${base}/request.vtl`,
      responseMappingTemplateLocation: `${base}/response.vtl`,
    });
  }
  const known = new Set(functions.map((fn) => fn.name));

  const resolvers = [];
  for (const resolver of api.resolvers) {
    const where = `resolver ${resolver.typeName}.${resolver.fieldName}`;
    if (resolver.code) {
      problems.push(`${where}: APPSYNC_JS is not simulated`);
    } else if (resolver.kind === 'PIPELINE') {
      const pipeline = (resolver.pipelineConfig && resolver.pipelineConfig.functions) || [];
      const missing = pipeline.filter((id) => !known.has(id));
      if (missing.length) {
        problems.push(`${where}: functions not loaded: ${missing.join(', ')}`);
        continue;
      }
      resolvers.push({
        kind: 'PIPELINE',
        typeName: resolver.typeName,
        fieldName: resolver.fieldName,
        functions: pipeline,
        requestMappingTemplate: resolver.requestMappingTemplate || '{}',
        responseMappingTemplate: resolver.responseMappingTemplate || '$util.toJson($ctx.prev.result)',
      });
    } else if (!types.has(resolver.dataSourceName)) {
      problems.push(`${where}: data source ${resolver.dataSourceName} not loaded`);
    } else {
      const request = resolver.requestMappingTemplate || defaultRequest(resolver.dataSourceName);
      if (!request) {
        problems.push(`${where}: no request mapping template`);
        continue;
      }
      resolvers.push({
        kind: 'UNIT',
        typeName: resolver.typeName,
        fieldName: resolver.fieldName,
        dataSourceName: resolver.dataSourceName,
        requestMappingTemplate: request,
        responseMappingTemplate: resolver.responseMappingTemplate || DEFAULT_RESPONSE,
      });
    }
  }

  const keys = api.apiKeys || [];
  return {
    problems,
    config: {
      schema: { path: `${api.apiId}.graphql`, content: api.schema },
      dataSources,
      functions,
      mappingTemplates,
      resolvers,
      appSync: {
        name: api.name,
        accountId: api.accountId,
        defaultAuthenticationType: authProvider({ authenticationType: api.authenticationType }),
        additionalAuthenticationProviders: (api.additionalAuthenticationProviders || []).map(authProvider),
        apiKey: keys.length ? keys[0].id : 'da2-no-valid-key',
      },
    },
  };
}

const simulator = new AmplifyAppSyncSimulator({ port: args.port, wsPort: args.port });
const httpServer = simulator._server._httpServer;

// Listen on the loopback interface only, like the sandbox (the simulator itself binds every interface).
const listen = httpServer.listen.bind(httpServer);
httpServer.listen = (port, ...rest) => listen(port, args.host, ...rest);

// Our health endpoint in front of the simulator's express app; its DELETE /clear-data (which
// would empty the tables in moto) is switched off.
const appListeners = httpServer.listeners('request');
httpServer.removeAllListeners('request');
httpServer.on('request', (request, response) => {
  const path = request.url.split('?')[0];
  if (path === HEALTH_PATH) {
    const body = JSON.stringify({
      status: 'ok',
      pid: process.pid,
      port: args.port,
      sandbox: args.sandbox,
      apiId: state.apiId,
      etag: state.etag,
      loadedAt: state.loadedAt,
      error: state.error,
    });
    response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    response.end(body);
    return;
  }
  if (path === '/clear-data') {
    response.writeHead(404, { 'Content-Type': 'application/json' });
    response.end('{"message": "switched off in the sandbox"}');
    return;
  }
  for (const listener of appListeners) {
    listener.call(httpServer, request, response);
  }
});

function load(api) {
  let built;
  try {
    built = simulatorConfig(api);
    simulator.reload(built.config);
  } catch (error) {
    // The simulator keeps the previous API; try again when the API changes.
    state.etag = api.etag;
    state.error = `API ${api.apiId} not loaded: ${error.message}`;
    console.error(`${new Date().toISOString()} ${state.error}`);
    return;
  }
  Object.assign(state, {
    apiId: api.apiId,
    etag: api.etag,
    loadedAt: new Date().toISOString(),
    error: built.problems.length ? built.problems.join('; ') : null,
    keys: api.apiKeys || [],
  });
  console.log(`${state.loadedAt} loaded API ${api.apiId} (${api.name}): ${built.config.resolvers.length} resolvers, `
    + `${built.config.dataSources.length} data sources${state.error ? `; not simulated: ${state.error}` : ''}`);
}

function unload() {
  simulator.reload({
    schema: { content: PLACEHOLDER_SCHEMA },
    appSync: {
      name: 'none',
      defaultAuthenticationType: { authenticationType: 'AWS_IAM' },
      additionalAuthenticationProviders: [],
    },
  });
  Object.assign(state, { apiId: null, etag: null, loadedAt: new Date().toISOString(), error: null, keys: [] });
  console.log(`${state.loadedAt} no GraphQL API with a schema in the sandbox; serving none`);
}

async function getJson(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!response.ok) {
    throw new Error(`GET ${url}: HTTP ${response.status}`);
  }
  return response.json();
}

async function poll() {
  try {
    const listing = await getJson(`${args.sandbox}/iotfleet-sandbox/appsync/apis`);
    const current = listing.current;
    if (!current) {
      if (state.apiId || state.loadedAt === null) {
        unload();
      }
    } else if (current.apiId !== state.apiId || current.etag !== state.etag) {
      load(await getJson(`${args.sandbox}/iotfleet-sandbox/appsync/${encodeURIComponent(current.apiId)}/config`));
    }
    if (state.sandboxReachable === false) {
      console.log(`${new Date().toISOString()} the sandbox answers again at ${args.sandbox}`);
    }
    state.sandboxReachable = true;
  } catch (error) {
    if (state.sandboxReachable !== false) {
      console.error(`${new Date().toISOString()} cannot read the API from ${args.sandbox}: ${error.message}`);
    }
    state.sandboxReachable = false;
  } finally {
    setTimeout(poll, args.interval);
  }
}

async function main() {
  await simulator.start();
  console.log(`${new Date().toISOString()} AppSync simulator on http://${args.host}:${args.port}/graphql `
    + `(realtime /graphql/realtime), API from ${args.sandbox}, pid ${process.pid}`);
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      simulator.stop().finally(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    });
  }
  poll();
}

main().catch((error) => {
  console.error(`AppSync simulator failed to start: ${error.message}`);
  process.exit(1);
});
