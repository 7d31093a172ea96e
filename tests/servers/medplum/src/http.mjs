// FHIR R4 RESTful API over node:http in front of Medplum's FhirRouter.
//
// The router handles read, vread, create (+ If-None-Exist), update (+ If-Match), conditional update, delete,
// patch, instance history, search and batch/transaction Bundles. This layer adds what a server around the
// router must do (Medplum's own server does the same in packages/server): the base path, /metadata, JSON
// bodies and content types, HTTP status codes, ETag / Last-Modified / Location, Prefer, OperationOutcome
// bodies on every error, paging links and includes on searchsets, If-Match on conditional update (the
// router drops it), the transaction policy of the profile, and one request at a time (the in-memory
// repository has no isolation of its own).
import {
  badRequest,
  created,
  getStatus,
  isOk,
  multipleMatches,
  normalizeOperationOutcome,
  OperationOutcomeError,
  parseSearchRequest,
  preconditionFailed,
} from '@medplum/core';
import { FhirRouter } from '@medplum/fhir-router';
import { capabilityStatement } from './capability.mjs';
import { finishSearchBundle } from './search.mjs';

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_BODY = 64 * 1024 * 1024;
// Medplum's router enforces these on transactions it runs natively (config.transactions = true).
const ROUTER_MAX_CONDITIONAL_ENTRIES = 8;
const ROUTER_MAX_UPDATES = 50;

class HttpError extends Error {
  constructor(status, outcome) {
    super(outcome.issue?.[0]?.details?.text ?? `HTTP ${status}`);
    this.status = status;
    this.outcome = outcome;
  }
}

function outcomeOf(code, text, expression) {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, details: { text }, ...(expression ? { expression: [expression] } : {}) }],
  };
}

/** ``W/"v"`` / ``"v"`` -> ``W/"v"``; anything else is refused (Medplum's router would silently ignore it). */
function normalizeIfMatch(value) {
  if (value === undefined) return undefined;
  const m = /^\s*(?:W\/)?"([^"]+)"\s*$/.exec(value);
  if (!m) {
    throw new HttpError(400, outcomeOf('invalid', 'If-Match must be an ETag such as W/"<versionId>"', 'If-Match'));
  }
  return `W/"${m[1]}"`;
}

function parseBody(method, contentType, raw) {
  if (!raw.length) return undefined;
  const ct = (contentType ?? '').split(';')[0].trim().toLowerCase();
  const json = ['', 'application/fhir+json', 'application/json', 'application/json-patch+json'];
  if (ct === 'application/x-www-form-urlencoded' && method === 'POST') {
    return { form: new URLSearchParams(raw.toString('utf8')) };
  }
  if (!json.includes(ct)) {
    throw new HttpError(415, outcomeOf('not-supported', `Unsupported Content-Type ${ct}: send application/fhir+json`));
  }
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, outcomeOf('structure', 'The request body is not valid JSON'));
  }
}

function queryObject(pairs) {
  const q = {};
  for (const [k, v] of pairs) {
    if (k in q) q[k] = [].concat(q[k], v);
    else q[k] = v;
  }
  return q;
}

function isResourceWithVersion(r) {
  return r && r.resourceType !== 'Bundle' && r.resourceType !== 'OperationOutcome' && r.meta?.versionId;
}

export class FhirHttpServer {
  constructor(opts, repo, types, software) {
    this.opts = opts;
    this.repo = repo;
    this.types = new Set(types);
    this.typeList = types;
    this.software = software;
    this.router = new FhirRouter();
    this.queue = Promise.resolve();
  }

  /** The node:http request listener. */
  listener() {
    return (req, res) => {
      const chunks = [];
      let size = 0;
      req.on('data', (c) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const run = () =>
          size > MAX_BODY
            ? this.send(req, res, Date.now(), { status: 413, body: outcomeOf('too-costly', 'Request body too large') })
            : this.handle(req, res, body);
        this.queue = this.queue.then(run, run);
      });
    };
  }

  async handle(req, res, raw) {
    const started = Date.now();
    let result;
    try {
      result = await this.dispatch(req, raw);
    } catch (err) {
      if (err instanceof HttpError) {
        result = { status: err.status, body: err.outcome };
      } else {
        const outcome = normalizeOperationOutcome(err);
        const status = getStatus(outcome);
        result = { status: status >= 400 ? status : 500, body: outcome };
        if (result.status >= 500) process.stderr.write(`error: ${err?.stack ?? err}\n`);
      }
    }
    this.send(req, res, started, result);
  }

  send(req, res, started, { status, body, headers }) {
    const text = body === undefined || body === null ? '' : JSON.stringify(body);
    res.writeHead(status, {
      ...(text ? { 'Content-Type': FHIR_JSON } : {}),
      'Content-Length': Buffer.byteLength(text),
      ...(headers ?? {}),
    });
    res.end(text);
    if (this.opts.log) {
      const path = (req.url ?? '').split('?')[0];
      process.stderr.write(`${req.method} ${path} ${status} ${Date.now() - started}ms\n`);
    }
  }

  baseUrl(req) {
    return `http://${req.headers.host ?? `${this.opts.host}:${this.port}`}${this.opts.basePath}`;
  }

  async dispatch(req, raw) {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const base = this.opts.basePath;
    if (url.pathname !== base && !url.pathname.startsWith(base + '/')) {
      throw new HttpError(404, outcomeOf('not-found', `Not found; the FHIR base is ${base}`));
    }
    const rel = url.pathname.slice(base.length).replace(/^\/+/, '').replace(/\/+$/, '');
    const segments = rel ? rel.split('/') : [];
    const method = req.method ?? 'GET';
    const baseUrl = this.baseUrl(req);

    if (rel === 'metadata') {
      if (method !== 'GET') throw new HttpError(405, outcomeOf('not-supported', 'metadata is read with GET'));
      return { status: 200, body: capabilityStatement(this.opts, this.typeList, baseUrl, this.software) };
    }
    if (segments.length && !this.types.has(segments[0])) {
      throw new HttpError(404, outcomeOf('not-supported', `Resource type ${segments[0]} is not served here`));
    }
    if (!['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
      throw new HttpError(405, outcomeOf('not-supported', `Method ${method} is not supported`));
    }
    let body = ['POST', 'PUT', 'PATCH'].includes(method) ? parseBody(method, req.headers['content-type'], raw) : undefined;
    const headers = { ...req.headers };
    const ifMatch = normalizeIfMatch(req.headers['if-match']);
    if (ifMatch) headers['if-match'] = ifMatch;
    else delete headers['if-match'];

    if (method === 'POST' && segments.length === 0) return this.postBundle(body, baseUrl);
    this.refuseSwitchedOff({
      ifNoneExist: method === 'POST' && req.headers['if-none-exist'] !== undefined,
      conditionalUpdate: method === 'PUT' && segments.length === 1 && url.search !== '',
      ifMatch: ifMatch !== undefined,
    });

    let routeUrl = rel + url.search;
    let searchPairs = [...url.searchParams];
    if (body?.form) {
      // POST Type/_search with a form body
      searchPairs = [...body.form];
      body = queryObject(searchPairs);
    }
    if (method === 'PUT' && segments.length === 1 && url.search && ifMatch) {
      routeUrl = await this.resolveConditionalIfMatch(segments[0], url.search, body, ifMatch);
    }
    const [outcome, resource] = await this.route(method, routeUrl, body, headers, false);
    let status = getStatus(outcome);
    if (!isOk(outcome)) return { status, body: outcome };

    let out = resource;
    const respHeaders = {};
    if (resource?.resourceType === 'Bundle' && resource.type === 'searchset') {
      const type = segments[0];
      const searchRequest = parseSearchRequest(type, queryObject(searchPairs));
      out = await finishSearchBundle(resource, {
        repo: this.repo,
        opts: this.opts,
        baseUrl,
        resourceType: type,
        searchRequest,
        pairs: searchPairs,
      });
    } else if (resource?.resourceType === 'Bundle' && resource.type === 'history') {
      for (const e of resource.entry ?? []) {
        if (e.resource) e.fullUrl = `${baseUrl}/${e.resource.resourceType}/${e.resource.id}`;
      }
    }
    if (method === 'PUT' && status === 200 && isResourceWithVersion(resource)) {
      if (this.repo.isFirstVersion(resource.resourceType, resource.id, resource.meta.versionId)) status = 201;
    }
    if (isResourceWithVersion(resource)) {
      respHeaders.ETag = `W/"${resource.meta.versionId}"`;
      respHeaders['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
      if (status === 201 || (method === 'POST' && segments.length === 1)) {
        respHeaders.Location = `${baseUrl}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
      }
    }
    if (method === 'DELETE') return { status: 200, body: outcome, headers: respHeaders };
    if (['POST', 'PUT', 'PATCH'].includes(method) && isResourceWithVersion(resource)) {
      const prefer = String(req.headers.prefer ?? '');
      if (/return=minimal/.test(prefer)) return { status, body: undefined, headers: respHeaders };
      if (/return=OperationOutcome/i.test(prefer)) return { status, body: outcome, headers: respHeaders };
    }
    return { status, body: out, headers: respHeaders };
  }

  /** 400 for a request using a feature switched off by --without (the metadata says it is absent). */
  refuseSwitchedOff({ ifNoneExist, conditionalUpdate, ifMatch }, where) {
    const without = new Set(this.opts.without);
    const refuse = (what) => {
      throw new HttpError(400, outcomeOf('not-supported', `${what} is not supported by this server`, where));
    };
    if (ifNoneExist && without.has('conditional-create')) refuse('Conditional create (If-None-Exist)');
    if (conditionalUpdate && without.has('conditional-update')) refuse('Conditional update (PUT Type?search)');
    if (ifMatch && without.has('versioned-update')) refuse('Versioned update (If-Match)');
  }

  route(method, url, body, headers, transactions) {
    const request = {
      method,
      url,
      pathname: '',
      body,
      params: {},
      query: {},
      headers,
      config: { transactions },
    };
    return this.router.handleRequest(request, this.repo);
  }

  /** ``PUT Type?search`` with If-Match: resolve the one match, check its version, update it by id. */
  async resolveConditionalIfMatch(type, search, body, ifMatch) {
    const sr = parseSearchRequest(type + search);
    sr.count = 2;
    sr.offset = 0;
    sr.sortRules = undefined;
    const found = await this.repo.searchResources(sr);
    if (found.length > 1) throw new OperationOutcomeError(multipleMatches);
    if (found.length === 0) {
      throw new HttpError(412, outcomeOf('conflict', 'If-Match was given but no resource matches the condition'));
    }
    const match = found[0];
    if (`W/"${match.meta?.versionId}"` !== ifMatch) throw new OperationOutcomeError(preconditionFailed);
    if (body && typeof body === 'object') {
      if (body.id && body.id !== match.id) {
        throw new OperationOutcomeError(badRequest('Resource ID did not match resolved ID', `${type}.id`));
      }
      body.id = match.id;
    }
    return `${type}/${match.id}`;
  }

  // --- batch and transaction ------------------------------------------------------------------

  async postBundle(body, baseUrl) {
    if (body?.resourceType !== 'Bundle') throw new HttpError(400, outcomeOf('invalid', 'Not a bundle'));
    if (body.type !== 'batch' && body.type !== 'transaction') {
      throw new HttpError(400, outcomeOf('invalid', `Unrecognized bundle type: ${body.type}`));
    }
    const without = new Set(this.opts.without);
    if (without.has(body.type)) {
      throw new HttpError(400, outcomeOf('not-supported', `${body.type} Bundles are not supported by this server`));
    }
    (body.entry ?? []).forEach((e, i) => {
      const r = e?.request ?? {};
      this.refuseSwitchedOff(
        {
          ifNoneExist: r.method === 'POST' && r.ifNoneExist !== undefined,
          conditionalUpdate: r.method === 'PUT' && String(r.url ?? '').includes('?'),
          ifMatch: r.ifMatch !== undefined,
        },
        `Bundle.entry[${i}]`
      );
    });
    const sent = (body.entry ?? []).map((e) => ({ method: e?.request?.method, url: e?.request?.url }));
    let answer;
    if (body.type === 'transaction' && this.opts.transactions === 'atomic') {
      answer = await this.atomicTransaction(body);
    } else {
      // a batch; or a transaction on a server without the transaction feature: Medplum's router then
      // processes it entry by entry (config.transactions false) and answers a transaction-response.
      answer = await this.route('POST', '', body, {}, false);
    }
    const [outcome, response] = answer;
    if (!isOk(outcome)) return { status: getStatus(outcome), body: outcome };
    await this.finishEntries(response, sent, baseUrl);
    return { status: 200, body: response };
  }

  async atomicTransaction(body) {
    const entries = body.entry ?? [];
    const conditional = entries.some((e) => {
      const r = e?.request ?? {};
      return (r.method === 'POST' && r.ifNoneExist) || ((r.method === 'PUT' || r.method === 'DELETE') && r.url?.includes('?'));
    });
    const updates = entries.filter((e) => e?.request?.method === 'PUT').length;
    const maxCond = this.opts.txMaxConditionalEntries;
    const maxUpd = this.opts.txMaxUpdates;
    if (maxCond > 0 && conditional && entries.length > maxCond) {
      throw new HttpError(
        400,
        outcomeOf('too-costly', `Transaction requires strict isolation but has too many entries (${entries.length} > ${maxCond} with a conditional entry)`)
      );
    }
    if (maxUpd > 0 && updates > maxUpd) {
      throw new HttpError(
        400,
        outcomeOf('too-costly', `Transaction contains more update operations than allowed (${updates} > ${maxUpd})`)
      );
    }
    const native =
      maxCond > 0 && maxCond <= ROUTER_MAX_CONDITIONAL_ENTRIES && maxUpd > 0 && maxUpd <= ROUTER_MAX_UPDATES;
    if (native) {
      // Medplum's own transaction processing; atomic through TestRepository.withTransaction.
      return this.route('POST', '', body, {}, true);
    }
    // Limits above the router's built-in ones (or none): process the entries as the router does for a
    // batch, inside one repository transaction, and undo everything if any entry failed.
    this.checkDuplicateIdentities(entries);
    try {
      return await this.repo.withTransaction(async () => {
        const [outcome, response] = await this.route('POST', '', body, {}, false);
        if (!isOk(outcome)) throw new OperationOutcomeError(outcome);
        const bad = (response.entry ?? []).findIndex((e) => !String(e?.response?.status ?? '').startsWith('2'));
        if (bad >= 0) {
          const failed = response.entry[bad].response;
          const oo = failed.outcome ?? outcomeOf('processing', `HTTP ${failed.status}`);
          throw new OperationOutcomeError({
            ...oo,
            issue: (oo.issue ?? []).map((i) => ({ ...i, expression: [...(i.expression ?? []), `Bundle.entry[${bad}]`] })),
          });
        }
        return [outcome, response];
      });
    } catch (err) {
      return [normalizeOperationOutcome(err)];
    }
  }

  checkDuplicateIdentities(entries) {
    const seen = new Set();
    entries.forEach((e, i) => {
      const keys = [];
      if (e?.fullUrl) keys.push(e.fullUrl);
      const r = e?.request;
      if (r && ['PUT', 'DELETE', 'PATCH'].includes(r.method) && r.url && !r.url.includes('?')) keys.push(r.url);
      for (const k of keys) {
        if (seen.has(k)) {
          throw new HttpError(400, outcomeOf('invalid', 'Duplicate resource identity found in Bundle', `Bundle.entry[${i}]`));
        }
        seen.add(k);
      }
    });
  }

  /**
   * Searches inside a batch get the same links, includes and total policy as direct ones; a PUT that
   * created its resource (update-as-create, lenient) answers 201 as a direct PUT does (the router says 200).
   */
  async finishEntries(response, sent, baseUrl) {
    const out = response.entry ?? [];
    for (let i = 0; i < out.length; i++) {
      const res = out[i]?.resource;
      const req = sent[i];
      if (req?.method === 'PUT' && out[i]?.response?.status === '200' && isResourceWithVersion(res)) {
        if (this.repo.isFirstVersion(res.resourceType, res.id, res.meta.versionId)) {
          out[i].response = { ...out[i].response, status: '201', outcome: created };
        }
      }
      if (req?.method !== 'GET' || res?.resourceType !== 'Bundle' || res.type !== 'searchset') continue;
      const [path, query = ''] = String(req.url).split('?');
      const type = path.split('/').filter(Boolean)[0];
      const pairs = [...new URLSearchParams(query)];
      out[i].resource = await finishSearchBundle(res, {
        repo: this.repo,
        opts: this.opts,
        baseUrl,
        resourceType: type,
        searchRequest: parseSearchRequest(type, queryObject(pairs)),
        pairs,
      });
    }
  }
}
