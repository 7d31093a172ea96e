// Medplum's in-memory FHIR repository (@medplum/fhir-router MemoryRepository) with the rules of Medplum's
// production server (packages/server Repository) that the in-memory one leaves out:
//
// * every write is validated by @medplum/core's strict StructureDefinition validator (--validate strict);
// * create (POST) always assigns a new UUID; a client's id is ignored (FHIR R4 §3.1.0.8, Medplum's server);
// * meta.versionId / meta.lastUpdated are always the server's, never the client's;
// * --ids uuid: PUT Type/<not a UUID> is 400 "Invalid id" (Medplum's server);
// * --no-update-create: PUT to an id that never existed is 404 (Medplum's server for non-admin clients); an id
//   that was deleted may be written again (Medplum restores it);
// * delete keeps history and makes reads answer 410 Gone (Medplum's server); history is newest first and
//   is not reordered by reading it (MemoryRepository 4.5.2 reverses its array in place);
// * withTransaction really rolls back (MemoryRepository's runs the callback and keeps partial writes): an undo
//   journal with savepoints, so conditional writes and atomic transactions are all-or-nothing;
// * search evaluates filters as search.mjs explains; unknown or unsupported parameters are 400 (Medplum).
//
// The conditional operations (conditionalCreate / conditionalUpdate / conditionalDelete / conditionalPatch) are
// Medplum's own, inherited from FhirRepository, running on these primitives.
import {
  badRequest,
  deepClone,
  deepEquals,
  generateId,
  gone,
  isUUID,
  notFound,
  OperationOutcomeError,
  preconditionFailed,
  stringify,
  validateResource,
} from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import { checkedParam, matchesFilter, sortResources } from './search.mjs';

const LOCAL_REFERENCE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/;

function withoutVersionMeta(resource) {
  const copy = deepClone(resource);
  if (copy.meta) {
    delete copy.meta.versionId;
    delete copy.meta.lastUpdated;
    if (Object.keys(copy.meta).length === 0) delete copy.meta;
  }
  return copy;
}

function* referencesIn(value) {
  if (Array.isArray(value)) {
    for (const v of value) yield* referencesIn(v);
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'reference' && typeof v === 'string') yield v;
      else if (k !== 'contained') yield* referencesIn(v);
    }
  }
}

export class TestRepository extends MemoryRepository {
  /**
   * @param {object} opts server options (options.mjs)
   * @param {Set<string>} types the resource types served
   */
  constructor(opts, types) {
    super();
    this.opts = opts;
    this.types = types;
    /** @type {Map<string, Map<string, object>>} type -> id -> tombstone of a deleted resource */
    this.deleted = new Map();
    /** undo journal of the open (nested) transactions */
    this.journal = [];
    this.txDepth = 0;
  }

  // --- storage primitives ----------------------------------------------------------------------

  checkType(resourceType) {
    if (!this.types.has(resourceType)) {
      throw new OperationOutcomeError(notFound, new Error(`resource type ${resourceType} not served`));
    }
  }

  /** The stored current version (not a copy) or undefined. */
  peek(resourceType, id) {
    return this.resources.get(resourceType)?.get(id);
  }

  /** Stored current versions of a type (not copies). */
  all(resourceType) {
    return [...(this.resources.get(resourceType)?.values() ?? [])];
  }

  isDeleted(resourceType, id) {
    return this.deleted.get(resourceType)?.has(id) ?? false;
  }

  versions(resourceType, id) {
    return this.history.get(resourceType)?.get(id) ?? [];
  }

  /** Whether ``versionId`` is the first version of the resource (an update that created it). */
  isFirstVersion(resourceType, id, versionId) {
    const h = this.versions(resourceType, id);
    return h.length > 0 && h[0].meta?.versionId === versionId;
  }

  _remember(resourceType, id) {
    if (this.txDepth === 0) return;
    this.journal.push({
      resourceType,
      id,
      current: this.peek(resourceType, id),
      historyLength: this.versions(resourceType, id).length,
      tombstone: this.deleted.get(resourceType)?.get(id),
    });
  }

  _undoTo(mark) {
    while (this.journal.length > mark) {
      const j = this.journal.pop();
      const byType = this.resources.get(j.resourceType);
      if (j.current) byType.set(j.id, j.current);
      else byType?.delete(j.id);
      const h = this.history.get(j.resourceType)?.get(j.id);
      if (h) h.length = j.historyLength;
      if (j.tombstone) this.deleted.get(j.resourceType).set(j.id, j.tombstone);
      else this.deleted.get(j.resourceType)?.delete(j.id);
    }
  }

  _map(root, key) {
    let m = root.get(key);
    if (!m) {
      m = new Map();
      root.set(key, m);
    }
    return m;
  }

  _store(stored) {
    const { resourceType, id } = stored;
    this._remember(resourceType, id);
    this._map(this.resources, resourceType).set(id, stored);
    const byId = this._map(this.history, resourceType);
    if (!byId.has(id)) byId.set(id, []);
    byId.get(id).push(stored);
    this.deleted.get(resourceType)?.delete(id);
  }

  /** The version to store: the client's content, the server's id and meta, validated. */
  _prepare(resource, id) {
    const r = JSON.parse(stringify(resource)); // drops empty values, as Medplum's server does
    r.id = id;
    r.meta = { ...(r.meta ?? {}), versionId: generateId(), lastUpdated: new Date().toISOString() };
    if (this.opts.validate === 'strict') validateResource(r);
    if (this.opts.checkReferences) this._checkReferences(r);
    return r;
  }

  _checkReferences(resource) {
    for (const ref of referencesIn(resource)) {
      if (ref.startsWith('urn:uuid:') || ref.startsWith('urn:oid:') || /^[A-Z][A-Za-z]+\?/.test(ref)) {
        // a bundle-local urn the transaction did not resolve, or a conditional reference (which Medplum's
        // router leaves as it is)
        throw new OperationOutcomeError(badRequest(`Unresolved reference ${ref.split('?')[0]}${ref.includes('?') ? '?...' : ''}`));
      }
      const m = LOCAL_REFERENCE.exec(ref);
      if (m && !this.peek(m[1], m[2]) && !(m[1] === resource.resourceType && m[2] === resource.id)) {
        throw new OperationOutcomeError(badRequest(`Invalid reference ${ref} (not found)`));
      }
    }
  }

  // --- transactions ------------------------------------------------------------------------------

  async withTransaction(callback) {
    const mark = this.journal.length;
    this.txDepth++;
    try {
      return await callback(this);
    } catch (err) {
      this._undoTo(mark);
      throw err;
    } finally {
      this.txDepth--;
      if (this.txDepth === 0) this.journal = [];
    }
  }

  // --- FhirRepository --------------------------------------------------------------------------

  generateId() {
    return generateId();
  }

  async createResource(resource, options) {
    this.checkType(resource.resourceType);
    const id = options?.assignedId && resource.id ? resource.id : this.generateId();
    if (this.peek(resource.resourceType, id)) {
      throw new OperationOutcomeError(badRequest('Assigned ID is already in use'));
    }
    const stored = this._prepare(resource, id);
    this._store(stored);
    return deepClone(stored);
  }

  async updateResource(resource, options) {
    const { resourceType, id } = resource;
    this.checkType(resourceType);
    if (!id) throw new OperationOutcomeError(badRequest('Missing id'));
    if (this.opts.ids === 'uuid' && !isUUID(id)) throw new OperationOutcomeError(badRequest('Invalid id'));
    const existing = this.peek(resourceType, id);
    if (options?.ifMatch !== undefined) {
      if (!existing) throw new OperationOutcomeError(this.isDeleted(resourceType, id) ? gone : notFound);
      if (existing.meta?.versionId !== options.ifMatch) throw new OperationOutcomeError(preconditionFailed);
    }
    if (!existing && !this.isDeleted(resourceType, id) && !this.opts.updateCreate) {
      throw new OperationOutcomeError(notFound);
    }
    if (existing && this.opts.skipUnchanged && deepEquals(withoutVersionMeta(existing), withoutVersionMeta(JSON.parse(stringify(resource))))) {
      return deepClone(existing);
    }
    const stored = this._prepare(resource, id);
    this._store(stored);
    return deepClone(stored);
  }

  async readResource(resourceType, id) {
    this.checkType(resourceType);
    const cur = this.peek(resourceType, id);
    if (cur) return deepClone(cur);
    throw new OperationOutcomeError(this.isDeleted(resourceType, id) ? gone : notFound);
  }

  async deleteResource(resourceType, id, options) {
    this.checkType(resourceType);
    const cur = this.peek(resourceType, id);
    if (!cur) throw new OperationOutcomeError(this.isDeleted(resourceType, id) ? gone : notFound);
    if (options?.ifMatch !== undefined && cur.meta?.versionId !== options.ifMatch) {
      throw new OperationOutcomeError(preconditionFailed);
    }
    this._remember(resourceType, id);
    const tombstone = {
      resourceType,
      id,
      deleted: true,
      meta: { versionId: generateId(), lastUpdated: new Date().toISOString() },
    };
    this.resources.get(resourceType).delete(id);
    this.versions(resourceType, id).push(tombstone);
    this._map(this.deleted, resourceType).set(id, tombstone);
  }

  async readHistory(resourceType, id, options) {
    this.checkType(resourceType);
    const all = this.versions(resourceType, id);
    if (!all.length) throw new OperationOutcomeError(notFound);
    const newestFirst = [...all].reverse();
    const offset = options?.offset ?? 0;
    const limit = options?.limit ?? 100;
    const entry = newestFirst.slice(offset, offset + limit).map((v, i) => {
      const first = offset + i === newestFirst.length - 1;
      const response = { status: v.deleted ? '410' : first ? '201' : '200', lastModified: v.meta.lastUpdated };
      if (v.deleted) {
        return { request: { method: 'DELETE', url: `${resourceType}/${id}` }, response };
      }
      return {
        resource: deepClone(v),
        request: { method: first ? 'POST' : 'PUT', url: first ? resourceType : `${resourceType}/${id}` },
        response: { ...response, etag: `W/"${v.meta.versionId}"` },
      };
    });
    return { resourceType: 'Bundle', type: 'history', total: all.length, ...(entry.length ? { entry } : {}) };
  }

  async readVersion(resourceType, id, versionId) {
    this.checkType(resourceType);
    const v = this.versions(resourceType, id).find((x) => x.meta?.versionId === versionId);
    if (!v) throw new OperationOutcomeError(notFound);
    if (v.deleted) throw new OperationOutcomeError(gone);
    return deepClone(v);
  }

  /**
   * Filter, sort and page. The Bundle's ``paging`` (offset, count, total) is for the HTTP layer
   * (search.mjs finishSearchBundle), which adds links, includes and the total as configured.
   */
  async search(searchRequest) {
    const { resourceType } = searchRequest;
    if (searchRequest.types?.length || resourceType === 'MultipleTypes') {
      throw new OperationOutcomeError(badRequest('Search across several types (_type) is not supported'));
    }
    this.checkType(resourceType);
    const filters = (searchRequest.filters ?? []).map((f) => ({ f, sp: checkedParam(resourceType, f.code, f.operator) }));
    const matches = this.all(resourceType).filter((r) => filters.every(({ f, sp }) => matchesFilter(r, f, sp)));
    sortResources(matches, resourceType, searchRequest.sortRules);
    const total = matches.length;
    const offset = Math.max(0, searchRequest.offset ?? 0);
    const wanted = searchRequest.count ?? this.opts.defaultCount;
    const count = Math.max(0, Math.min(Number.isFinite(wanted) ? wanted : this.opts.defaultCount, this.opts.maxCount));
    const page = matches.slice(offset, offset + count);
    const bundle = {
      resourceType: 'Bundle',
      type: 'searchset',
      total,
      ...(page.length ? { entry: page.map((r) => ({ resource: deepClone(r), search: { mode: 'match' } })) } : {}),
    };
    Object.defineProperty(bundle, 'paging', { value: { offset, count, total }, enumerable: false });
    return bundle;
  }
}
