// The Postman collection and environment (clients/postman/), generated from the OpenAPI
// document by openapi-to-postmanv2, then shaped for use:
//   - folders by tag; auth inherited from the collection (bearer {{accessToken}}), none on
//     the public operations; path parameters are collection variables ({{reservationId}} …)
//     that the requests creating those things fill in;
//   - "Log in" stores the access and refresh tokens in collection variables, "Refresh"
//     rotates them, "Log out" forgets them; a second login request uses HTTP Basic;
//   - every answer is checked (collection-level test): its status is one the operation
//     documents, and a JSON body has the documented shape;
//   - a "Walkthrough" folder, first, runs one user's session end to end with assertions on
//     every step (`newman run … --folder Walkthrough`).
// The output is byte-for-byte reproducible: the suite compares it with the committed files.
import { createRequire } from 'node:module';
import type { OpenApiDocument } from './openapi-document.js';

// The converter fakes values for schemas without examples with Math.random, and keeps the
// function it finds when it loads. Routing Math.random through a switch before loading it
// lets a conversion run on a seeded sequence (every other caller keeps the real one).
const unseeded = Math.random;
let seeded: (() => number) | null = null;
Math.random = () => (seeded ? seeded() : unseeded());
type ConversionResult = { result: boolean; reason?: string; output: { type: string; data: PostmanCollection }[] };
const converter = createRequire(import.meta.url)('openapi-to-postmanv2') as {
  convertV2(input: { type: 'json'; data: unknown }, options: Record<string, unknown>, cb: (err: Error | null, result: ConversionResult) => void): void;
};

/** The converter's options. Enum values in lower case: the converter compares them so. */
export const CONVERTER_OPTIONS = {
  folderStrategy: 'tags',
  parametersResolution: 'example',
  enableOptionalParameters: false,
  alwaysInheritAuthentication: true,
  requestNameSource: 'fallback',
  includeAuthInfoInExample: false,
};

/** Fixed, so that importing a newer collection replaces the older one in Postman. */
const COLLECTION_ID = '6c1b7f3e-2d4a-4e8b-9f10-b3e7a2c4d5f6';
export const WALKTHROUGH = 'Walkthrough';

interface PmVariable {
  key: string;
  value: string;
  type?: string;
  description?: string;
  disabled?: boolean;
}
interface PmAuth {
  type: string;
  [scheme: string]: unknown;
}
interface PmEvent {
  listen: 'prerequest' | 'test';
  script: { type: 'text/javascript'; exec: string[] };
}
interface PmRequest {
  method: string;
  url: { raw?: string; host: string[]; path: string[]; query?: PmVariable[]; variable?: PmVariable[] };
  header?: PmVariable[];
  body?: { mode: string; raw?: string; options?: unknown };
  auth?: PmAuth;
  description?: unknown;
  [other: string]: unknown;
}
interface PmItem {
  name: string;
  id?: string;
  description?: unknown;
  request?: PmRequest;
  response?: { code?: number; [other: string]: unknown }[];
  item?: PmItem[];
  event?: PmEvent[];
  auth?: PmAuth;
  [other: string]: unknown;
}
export interface PostmanCollection {
  info: Record<string, unknown>;
  item: PmItem[];
  event?: PmEvent[];
  variable?: PmVariable[];
  auth?: PmAuth;
  [other: string]: unknown;
}

interface Operation {
  id: string;
  method: string;
  path: string;
  public: boolean;
  /** status → the JSON schema of the answer's body (null: no body, or not JSON). */
  answers: Record<string, unknown>;
}

/** A sequence from a fixed seed (a linear congruential generator is plenty for fake values). */
function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

function convert(document: OpenApiDocument): Promise<PostmanCollection> {
  seeded = seededRandom(1);
  return new Promise<PostmanCollection>((resolve, reject) => {
    converter.convertV2({ type: 'json', data: structuredClone(document) }, CONVERTER_OPTIONS, (err, result) => {
      if (err) reject(err);
      else if (!result.result) reject(new Error(`openapi-to-postmanv2: ${result.reason}`));
      else resolve(result.output[0]!.data);
    });
  }).finally(() => (seeded = null));
}

/** Random ids the converter gives every item: dropped, Postman makes its own on import. */
function withoutIds<T>(value: T): T {
  if (Array.isArray(value)) return value.map(withoutIds) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([k]) => k !== 'id' && k !== '_postman_id').map(([k, v]) => [k, withoutIds(v)])) as T;
  }
  return value;
}

const AJV6_FORMATS = new Set(['date', 'time', 'date-time', 'uri', 'uri-reference', 'email', 'hostname', 'ipv4', 'ipv6', 'uuid', 'regex']);

/**
 * A response schema as Postman's sandbox validates it (Ajv 6, draft-07): references point
 * into `definitions`, annotations are dropped, formats Ajv 6 does not know are left out.
 */
function forSandbox(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(forSandbox);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'examples' || key === 'example' || key === 'description') continue;
    if (key === 'format' && !AJV6_FORMATS.has(String(value))) continue;
    if (key === '$ref' && typeof value === 'string') out[key] = value.replace('#/components/schemas/', '#/definitions/');
    else if (key === 'properties' && value && typeof value === 'object') {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, s]) => [name, forSandbox(s)]));
    } else out[key] = forSandbox(value);
  }
  return out;
}

function operationsOf(document: OpenApiDocument): Map<string, Operation> {
  const operations = new Map<string, Operation>();
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const security = (op.security ?? []) as Record<string, unknown>[];
      const answers: Record<string, unknown> = {};
      for (const [status, response] of Object.entries(op.responses as Record<string, { content?: Record<string, { schema?: unknown }> }>)) {
        const schema = response.content?.['application/json']?.schema;
        answers[status] = schema && (schema as { type?: string }).type !== 'string' ? forSandbox(schema) : null;
      }
      operations.set(`${method.toUpperCase()} ${path}`, {
        id: op.operationId,
        method: method.toUpperCase(),
        path,
        public: !security.some((s) => 'bearerAuth' in s),
        answers,
      });
    }
  }
  return operations;
}

/** The document's path of a converted request: `v1/sessions/:id` → `/v1/sessions/{id}`. */
function documentPath(request: PmRequest): string {
  return '/' + request.url.path.map((segment) => segment.replace(/^:(.+)$/, '{$1}')).join('/');
}

/** `/v1/reservations/{id}` → reservationId; `/v1/machines/{name}` → machineName. */
function variableFor(path: string, param: string): string {
  const segments = path.split('/');
  const owner = segments[segments.indexOf(`{${param}}`) - 1]!.replace(/s$/, '');
  return `${owner}${param[0]!.toUpperCase()}${param.slice(1)}`;
}

const script = (listen: PmEvent['listen'], code: string): PmEvent => ({
  listen,
  script: { type: 'text/javascript', exec: code.trim().split('\n') },
});

const jsonBody = (value: unknown) => ({ mode: 'raw', raw: JSON.stringify(value, null, 2), options: { raw: { language: 'json' } } });

const STORE_TOKENS = `
if (pm.response.code === 200) {
  const tokens = pm.response.json();
  pm.collectionVariables.set('accessToken', tokens.access_token);
  pm.collectionVariables.set('refreshToken', tokens.refresh_token);
  pm.collectionVariables.set('sessionId', tokens.session_id);
}`;

const storeField = (variable: string, field: string, status: number) => `
if (pm.response.code === ${status}) pm.collectionVariables.set('${variable}', pm.response.json().${field});`;

/** What particular operations do beyond the converter's request. */
const SHAPES: Record<string, (item: PmItem) => void> = {
  register(item) {
    item.request!.body = jsonBody({ username: '{{username}}', password: '{{password}}' });
    item.event = [script('test', storeField('userId', 'id', 201))];
  },
  createToken(item) {
    item.name = 'Log in';
    item.request!.body = jsonBody({ username: '{{username}}', password: '{{password}}' });
    item.event = [script('test', STORE_TOKENS)];
  },
  refreshToken(item) {
    item.name = 'Refresh the tokens';
    item.request!.body = jsonBody({ refresh_token: '{{refreshToken}}' });
    item.event = [script('test', STORE_TOKENS)];
  },
  logout(item) {
    // With the access token (inherited): the body form is for clients that only kept a refresh token.
    delete item.request!.body;
    item.request!.header = (item.request!.header ?? []).filter((h) => h.key.toLowerCase() !== 'content-type');
    item.event = [
      script('test', `
if (pm.response.code === 204) {
  pm.collectionVariables.set('accessToken', '');
  pm.collectionVariables.set('refreshToken', '');
}`),
    ];
  },
  createUser: (item) => void (item.event = [script('test', storeField('userId', 'id', 201))]),
  createMachine: (item) => void (item.event = [script('test', storeField('machineName', 'name', 201))]),
  createReservation: (item) => void (item.event = [script('test', storeField('reservationId', 'id', 201))]),
  createImage: (item) => void (item.event = [script('test', storeField('imageId', 'id', 202))]),
  createVm: (item) => void (item.event = [script('test', storeField('vmId', 'id', 202))]),
};

/** The same login with HTTP Basic instead of a JSON body. */
function basicLogin(login: PmItem): PmItem {
  const item = structuredClone(login);
  item.name = 'Log in with HTTP Basic';
  delete item.request!.body;
  item.request!.header = (item.request!.header ?? []).filter((h) => h.key.toLowerCase() !== 'content-type');
  item.request!.auth = {
    type: 'basic',
    basic: [
      { key: 'username', value: '{{username}}', type: 'string' },
      { key: 'password', value: '{{password}}', type: 'string' },
    ],
  };
  item.response = [];
  return item;
}

interface Step {
  /** The request it starts from: an operationId, or the name of a shaped request. */
  from: string;
  name: string;
  body?: unknown;
  query?: Record<string, string>;
  /** The bearer token to send instead of {{accessToken}} (a collection variable). */
  bearer?: string;
  before?: string;
  checks: string;
}

/**
 * One user's session, in the order a person would go: each step checks its status and what
 * the answer must say (the collection-level test checks every answer's documented shape).
 */
const STEPS: Step[] = [
  {
    from: 'register',
    name: 'Register',
    checks: `
pm.test('answers 201 Created', () => pm.response.to.have.status(201));
pm.test('the user is {{username}}', () => pm.expect(pm.response.json().username).to.eql(pm.variables.get('username')));`,
  },
  {
    from: 'Log in',
    name: 'Log in (JSON)',
    checks: `
pm.test('answers 200 with bearer tokens', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().token_type).to.eql('Bearer');
  pm.expect(pm.response.json().refresh_token).to.match(/^brt_/);
});`,
  },
  {
    from: 'Log in with HTTP Basic',
    name: 'Log in (HTTP Basic)',
    before: `pm.variables.set('previousSession', pm.collectionVariables.get('sessionId'));`,
    checks: `
pm.test('answers 200 with a new session', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().session_id).to.not.eql(pm.variables.get('previousSession'));
});`,
  },
  {
    from: 'whoami',
    name: 'Who am I',
    checks: `
pm.test('answers 200: this user, this session', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().username).to.eql(pm.variables.get('username'));
  pm.expect(pm.response.json().session_id).to.eql(pm.collectionVariables.get('sessionId'));
});`,
  },
  {
    from: 'Refresh the tokens',
    name: 'Refresh the tokens',
    before: `pm.variables.set('spentRefreshToken', pm.collectionVariables.get('refreshToken'));`,
    checks: `
pm.test('answers 200 with a new refresh token', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().refresh_token).to.not.eql(pm.variables.get('spentRefreshToken'));
});`,
  },
  {
    from: 'verifyToken',
    name: 'Verify the access token',
    checks: `
pm.test('answers 200: active, for this user', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().active).to.eql(true);
  pm.expect(pm.response.json().username).to.eql(pm.variables.get('username'));
});`,
  },
  {
    from: 'listMachines',
    name: 'Available machines',
    query: { status: 'available' },
    checks: `
pm.test('answers 200 with at least one available machine', () => {
  pm.response.to.have.status(200);
  const items = pm.response.json().items;
  pm.expect(items.length).to.be.above(0);
  items.forEach((m) => pm.expect(m.status).to.eql('available'));
});`,
  },
  {
    from: 'getPool',
    name: 'The pool',
    checks: `
pm.test('answers 200 with free capacity', () => {
  pm.response.to.have.status(200);
  const pool = pm.response.json();
  pm.expect(pool.available).to.be.above(0);
  pm.expect(pool.total).to.be.at.least(pool.available);
});`,
  },
  {
    from: 'createReservation',
    name: 'Reserve a machine',
    body: { count: 1, duration_minutes: 30 },
    checks: `
pm.test('answers 201: active, one machine, an account for this user', () => {
  pm.response.to.have.status(201);
  const r = pm.response.json();
  pm.expect(r.status).to.eql('active');
  pm.expect(r.machines).to.have.lengthOf(1);
  pm.expect(r.account.username).to.eql(pm.variables.get('username'));
  pm.expect(r.account.password).to.be.a('string');
  pm.collectionVariables.set('reservedUntil', r.expires_at);
});`,
  },
  {
    from: 'getReservation',
    name: 'Read the reservation',
    checks: `
pm.test('answers 200: the active reservation', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().id).to.eql(pm.collectionVariables.get('reservationId'));
  pm.expect(pm.response.json().status).to.eql('active');
  pm.expect(pm.response.json().seconds_remaining).to.be.above(0);
});`,
  },
  {
    from: 'extendReservation',
    name: 'Extend the reservation',
    body: { minutes: 15 },
    checks: `
pm.test('answers 200 with a later end', () => {
  pm.response.to.have.status(200);
  const before = Date.parse(pm.collectionVariables.get('reservedUntil'));
  pm.expect(Date.parse(pm.response.json().expires_at)).to.be.above(before);
});`,
  },
  {
    from: 'releaseReservation',
    name: 'Release the reservation',
    checks: `
pm.test('answers 200: released', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().status).to.eql('released');
});`,
  },
  {
    from: 'listImages',
    name: 'Images',
    checks: `
pm.test('answers 200 with a list', () => {
  pm.response.to.have.status(200);
  pm.expect(pm.response.json().items).to.be.an('array');
});`,
  },
  {
    from: 'logout',
    name: 'Log out',
    before: `pm.collectionVariables.set('loggedOutToken', pm.collectionVariables.get('accessToken'));`,
    checks: `pm.test('answers 204 No Content', () => pm.response.to.have.status(204));`,
  },
  {
    from: 'whoami',
    name: 'The token after logging out',
    // The token just logged out, sent on purpose: it must be refused now, not at its expiry.
    bearer: 'loggedOutToken',
    checks: `
pm.test('answers 401: the session has ended', () => {
  pm.response.to.have.status(401);
  pm.expect(pm.response.json().code).to.eql('session_revoked');
});`,
  },
];

function walkthrough(byName: Map<string, PmItem>): PmItem {
  const item = STEPS.map((step) => {
    const base = byName.get(step.from);
    if (!base) throw new Error(`walkthrough step "${step.name}": no request ${step.from}`);
    const copy = structuredClone(base);
    copy.name = step.name;
    copy.response = [];
    if (step.body) copy.request!.body = jsonBody(step.body);
    if (step.bearer) copy.request!.auth = { type: 'bearer', bearer: [{ key: 'token', value: `{{${step.bearer}}}`, type: 'string' }] };
    if (step.query) {
      copy.request!.url.query = (copy.request!.url.query ?? []).map((q) =>
        q.key in step.query! ? { ...q, value: step.query![q.key]!, disabled: false } : q,
      );
    }
    // The step's own checks run after the request's (which store tokens and ids).
    copy.event = [
      ...(step.before ? [script('prerequest', step.before)] : []),
      ...(copy.event ?? []).filter((e) => e.listen === 'test'),
      script('test', step.checks),
    ];
    return copy;
  });
  return {
    name: WALKTHROUGH,
    description:
      "One user's session, every step checked: register {{username}} with {{password}}, log in (JSON, then HTTP Basic), " +
      'refresh, verify, look at the machines and the pool, reserve a machine, extend and release the reservation, list the ' +
      'images, log out. Set username and password in the environment, then run this folder (Postman: Run folder; ' +
      'newman: --folder Walkthrough). Needs an available machine in the pool.',
    item,
  };
}

/** The collection-level test: every answer is one its operation documents, with the documented shape. */
function answerChecks(answers: Record<string, Record<string, unknown>>, definitions: Record<string, unknown>): PmEvent {
  return script(
    'test',
    `
// Generated: for every request, the answers its operation documents (status → JSON schema).
const answers = ${JSON.stringify(answers)};
const definitions = ${JSON.stringify(definitions)};
const documented = answers[pm.info.requestName];
if (documented) {
  const status = String(pm.response.code);
  pm.test('answers a status the operation documents (' + status + ')', () => pm.expect(Object.keys(documented)).to.include(status));
  const schema = documented[status];
  if (schema && /json/.test(pm.response.headers.get('Content-Type') || '')) {
    pm.test('the body has the documented shape', () => pm.response.to.have.jsonSchema({ allOf: [schema], definitions: definitions }));
  }
}`,
  );
}

export async function renderPostmanCollection(document: OpenApiDocument): Promise<PostmanCollection> {
  const converted = withoutIds(await convert(document));
  const operations = operationsOf(document);
  const byName = new Map<string, PmItem>();
  const answers: Record<string, Record<string, unknown>> = {};
  const pathVariables = new Set<string>();

  for (const folder of converted.item) {
    const shaped: PmItem[] = [];
    for (const item of folder.item ?? []) {
      const request = item.request!;
      const op = operations.get(`${request.method} ${documentPath(request)}`);
      if (!op) throw new Error(`no operation for ${request.method} ${documentPath(request)}`);
      // Saved examples: the documented successful answers (error ones are only faked bodies).
      item.response = (item.response ?? []).filter((r) => r.code !== undefined && r.code < 300);
      if (op.public) request.auth = { type: 'noauth' };
      for (const v of request.url.variable ?? []) {
        const name = variableFor(op.path, v.key);
        v.value = `{{${name}}}`;
        pathVariables.add(name);
      }
      SHAPES[op.id]?.(item);
      shaped.push(item);
      if (op.id === 'createToken') shaped.push(basicLogin(item));
    }
    folder.item = shaped;
    for (const item of shaped) {
      if (byName.has(item.name)) throw new Error(`two requests named ${item.name}`);
      byName.set(item.name, item);
      const op = operations.get(`${item.request!.method} ${documentPath(item.request!)}`)!;
      if (!byName.has(op.id)) byName.set(op.id, item);
    }
  }
  const walk = walkthrough(byName);
  // The collection-level check finds a request's answers by its name.
  const opOfName = new Map<string, string>();
  for (const item of [...walk.item!, ...converted.item.flatMap((f) => f.item ?? [])]) {
    const op = operations.get(`${item.request!.method} ${documentPath(item.request!)}`)!;
    if (opOfName.has(item.name) && opOfName.get(item.name) !== op.id) throw new Error(`two operations under the name ${item.name}`);
    opOfName.set(item.name, op.id);
    answers[item.name] = op.answers;
  }
  const definitions = Object.fromEntries(
    Object.entries(document.components?.schemas ?? {})
      .filter(([name]) => !name.endsWith('Input'))
      .map(([name, schema]) => [name, forSandbox(schema)]),
  );

  const baseUrl = converted.variable?.find((v) => v.key === 'baseUrl')?.value ?? '';
  return {
    info: { ...converted.info, _postman_id: COLLECTION_ID },
    item: [walk, ...converted.item],
    auth: { type: 'bearer', bearer: [{ key: 'token', value: '{{accessToken}}', type: 'string' }] },
    event: [answerChecks(answers, definitions)],
    variable: [
      { key: 'baseUrl', value: baseUrl, description: 'berth, e.g. https://berth.example.com (the environment may set it)' },
      { key: 'username', value: '', description: 'the account to log in with (set it in the environment)' },
      { key: 'password', value: '', description: 'its password (set it in the environment)' },
      { key: 'accessToken', value: '', description: 'set by Log in and Refresh the tokens; sent as the bearer token' },
      { key: 'refreshToken', value: '', description: 'set by Log in; spent and replaced by Refresh the tokens' },
      ...[...pathVariables].sort().map((key) => ({ key, value: '', description: 'filled in by the request that creates it, or by you' })),
      { key: 'reservedUntil', value: '', description: 'the Walkthrough: the reservation end before extending it' },
      { key: 'loggedOutToken', value: '', description: 'the Walkthrough: the access token it logged out, sent once more' },
    ],
  };
}

export function renderPostmanEnvironment(baseUrl: string) {
  return {
    name: 'berth',
    values: [
      { key: 'baseUrl', value: baseUrl, type: 'default', enabled: true },
      { key: 'username', value: '', type: 'default', enabled: true },
      { key: 'password', value: '', type: 'secret', enabled: true },
    ],
    _postman_variable_scope: 'environment',
  };
}
