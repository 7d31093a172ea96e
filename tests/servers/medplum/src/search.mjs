// Search evaluation for the in-memory repository, and what the HTTP layer adds to a searchset Bundle.
//
// Medplum's MemoryRepository (4.5.2) matches token values without R4 escaping (``\|``, ``\,``, ``\$``),
// matches references only by exact string, and pages, includes and trims nothing. Here: filters are parsed
// by @medplum/core's parseSearchRequest (as Medplum does) and evaluated with its FHIRPath engine; token and
// reference filters follow FHIR R4 search §2.1.1 (escaping, system|code, bare ids, absolute URLs); date,
// string and uri filters use @medplum/core's own matcher.
import {
  badRequest,
  deepClone,
  matchesSearchRequest,
  OperationOutcomeError,
  Operator,
  parseFhirPath,
  toTypedValue,
} from '@medplum/core';
import { isDisabledParam, searchParamsOf, SUPPORTED_PARAM_TYPES } from './schema.mjs';

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };
const MAX_INCLUDE_DEPTH = 5;

// --- FHIRPath, cached per (type, parameter) ----------------------------------------------------

const atoms = new Map();

/** The parsed expression of ``sp`` restricted to ``resourceType``'s own branches of the union. */
function atomFor(resourceType, sp) {
  const key = `${resourceType}\u0000${sp.code}`;
  let atom = atoms.get(key);
  if (!atom) {
    const parts = (sp.expression ?? '').split(' | ');
    const own = parts.filter((p) => p.replace(/^\(+/, '').startsWith(resourceType + '.'));
    atom = parseFhirPath((own.length ? own : parts).join(' | '));
    atoms.set(key, atom);
  }
  return atom;
}

/** Typed values (``{type, value}``) of a search parameter's expression on a resource. */
export function paramValues(resource, sp) {
  return atomFor(resource.resourceType, sp).eval({ variables: {} }, [toTypedValue(resource)]);
}

// --- R4 escaping (search §2.1.1.6: \, \| \$ \\) -------------------------------------------------

/** Split on ``sep`` where it is not escaped by a backslash; parts keep their escapes. */
export function splitUnescaped(text, sep) {
  const parts = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\\' && i + 1 < text.length) {
      cur += ch + text[i + 1];
      i++;
    } else if (ch === sep) {
      parts.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  parts.push(cur);
  return parts;
}

export function unescapeValue(text) {
  return text.replace(/\\(.)/g, '$1');
}

// --- token -----------------------------------------------------------------------------------

/** ``[system|]code`` alternatives of a token search value: ``{system?, code}`` (system '' = no system). */
function parseTokenAlternatives(raw) {
  return splitUnescaped(raw, ',').map((alt) => {
    const bar = splitUnescaped(alt, '|');
    if (bar.length === 1) return { code: unescapeValue(alt) };
    // More than one unescaped "|" is not [system]|[code]: it matches nothing (a "|" inside a value must be
    // sent as "\|"). Medplum reads such a value as system|code and ignores the rest, which no value matches
    // either when the "|" was meant to be part of it.
    if (bar.length > 2) return { invalid: true };
    return { system: unescapeValue(bar[0]), code: unescapeValue(bar[1]) };
  });
}

/** ``{system, code}`` pairs held by a typed value (Identifier, Coding, CodeableConcept, code, string...). */
function tokensOf(typed) {
  const { type, value } = typed;
  if (value === undefined || value === null) return [];
  switch (type) {
    case 'Identifier':
    case 'ContactPoint':
      return [{ system: value.system, code: value.value }];
    case 'Coding':
      return [{ system: value.system, code: value.code }];
    case 'CodeableConcept':
      return (value.coding ?? []).map((c) => ({ system: c.system, code: c.code }));
    default:
      return typeof value === 'object' ? [] : [{ system: undefined, code: String(value) }];
  }
}

function tokenMatches(token, alt) {
  if (alt.invalid) return false;
  if (alt.system === undefined) return alt.code !== '' && token.code === alt.code;
  if (alt.system === '') return !token.system && token.code === alt.code;
  if (token.system !== alt.system) return false;
  return alt.code === '' || token.code === alt.code;
}

function matchToken(resource, sp, filter) {
  const tokens = paramValues(resource, sp).flatMap(tokensOf);
  const alts = parseTokenAlternatives(filter.value);
  const hit = tokens.some((t) => alts.some((a) => tokenMatches(t, a)));
  return filter.operator === Operator.NOT ? !hit : hit;
}

// --- reference -------------------------------------------------------------------------------

/** ``Type/id`` of a literal reference (relative, absolute, or with a _history tail); else the string. */
export function normalizeReference(ref) {
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref);
  return m ? `${m[1]}/${m[2]}` : ref;
}

function matchReference(resource, sp, filter) {
  const refs = [];
  for (const tv of paramValues(resource, sp)) {
    const v = tv.value;
    const s = typeof v === 'string' ? v : v?.reference;
    if (typeof s === 'string') refs.push(normalizeReference(s));
  }
  const hit = splitUnescaped(filter.value, ',').some((alt) => {
    const want = normalizeReference(unescapeValue(alt));
    if (want.includes('/')) return refs.includes(want);
    return refs.some((r) => r.endsWith('/' + want));
  });
  return filter.operator === Operator.NOT_EQUALS || filter.operator === Operator.NOT ? !hit : hit;
}

// --- filters ---------------------------------------------------------------------------------

const PRESENCE = new Set([Operator.MISSING, Operator.PRESENT]);
const TOKEN_OPERATORS = new Set([Operator.EQUALS, Operator.NOT]);
const REFERENCE_OPERATORS = new Set([Operator.EQUALS, Operator.NOT_EQUALS, Operator.NOT]);

/** The search parameter of a filter, or a 400 naming what this server does not support. */
export function checkedParam(resourceType, code, operator) {
  const sp = searchParamsOf(resourceType)[code];
  if (!sp || code === '_compartment' || isDisabledParam(resourceType, code)) {
    throw new OperationOutcomeError(badRequest(`Unknown search parameter: ${code}`, code));
  }
  if (!SUPPORTED_PARAM_TYPES.has(sp.type)) {
    throw new OperationOutcomeError(badRequest(`Search parameter ${code} (${sp.type}) is not supported`, code));
  }
  if (operator !== undefined && !PRESENCE.has(operator)) {
    if (sp.type === 'token' && !TOKEN_OPERATORS.has(operator)) {
      throw new OperationOutcomeError(badRequest(`Unsupported modifier or prefix "${operator}" for ${code}`, code));
    }
    if (sp.type === 'reference' && !REFERENCE_OPERATORS.has(operator)) {
      throw new OperationOutcomeError(badRequest(`Unsupported modifier or prefix "${operator}" for ${code}`, code));
    }
  }
  return sp;
}

export function matchesFilter(resource, filter, sp) {
  if (PRESENCE.has(filter.operator)) {
    return matchesSearchRequest(resource, { resourceType: resource.resourceType, filters: [filter] });
  }
  if (sp.type === 'token') return matchToken(resource, sp, filter);
  if (sp.type === 'reference') return matchReference(resource, sp, filter);
  return matchesSearchRequest(resource, { resourceType: resource.resourceType, filters: [filter] });
}

// --- sorting ---------------------------------------------------------------------------------

function sortKey(resource, sp) {
  const first = paramValues(resource, sp)[0];
  if (!first) return undefined;
  const v = first.value;
  if (typeof v !== 'object' || v === null) return String(v);
  if (first.type === 'Period') return v.start ?? v.end;
  if (first.type === 'Reference') return v.reference;
  if (first.type === 'Identifier') return v.value;
  if (first.type === 'Coding') return v.code;
  if (first.type === 'CodeableConcept') return v.coding?.[0]?.code ?? v.text;
  if (first.type === 'HumanName') return v.family ?? v.text;
  return JSON.stringify(v);
}

/** Sort in place by ``_sort`` rules (missing values last; ties keep storage order). */
export function sortResources(resources, resourceType, sortRules) {
  if (!sortRules?.length) return resources;
  const params = sortRules.map((r) => checkedParam(resourceType, r.code));
  const keyed = resources.map((res, i) => ({ res, i, keys: params.map((sp) => sortKey(res, sp)) }));
  keyed.sort((a, b) => {
    for (let k = 0; k < sortRules.length; k++) {
      const x = a.keys[k];
      const y = b.keys[k];
      if (x === y) continue;
      if (x === undefined) return 1;
      if (y === undefined) return -1;
      const c = x < y ? -1 : 1;
      return sortRules[k].descending ? -c : c;
    }
    return a.i - b.i;
  });
  keyed.forEach((k, i) => {
    resources[i] = k.res;
  });
  return resources;
}

// --- what the HTTP layer adds: _elements, _include/_revinclude, fullUrl, links, total -------------

/** ``_elements``: keep the named top-level elements (plus resourceType, id, meta) and tag SUBSETTED. */
export function subsetResource(resource, fields) {
  const keep = new Set(['resourceType', 'id', 'meta', ...fields]);
  const out = {};
  for (const [k, v] of Object.entries(resource)) if (keep.has(k)) out[k] = v;
  out.meta = { ...(out.meta ?? {}), tag: [...(out.meta?.tag ?? []), SUBSETTED] };
  return out;
}

async function includeTargets(repo, resources, inc) {
  const sp = checkedParam(inc.resourceType, inc.searchParam);
  if (sp.type !== 'reference') throw new OperationOutcomeError(badRequest(`_include needs a reference parameter`));
  const refs = new Set();
  for (const r of resources) {
    if (r.resourceType !== inc.resourceType) continue;
    for (const tv of paramValues(r, sp)) {
      const s = typeof tv.value === 'string' ? tv.value : tv.value?.reference;
      if (typeof s !== 'string') continue;
      const ref = normalizeReference(s);
      if (ref.includes('/') && (!inc.targetType || ref.startsWith(inc.targetType + '/'))) refs.add(ref);
    }
  }
  const out = [];
  for (const ref of refs) {
    const [type, id] = ref.split('/');
    const found = repo.peek(type, id);
    if (found) out.push(found);
  }
  return out;
}

async function revIncludeSources(repo, resources, inc) {
  const sp = checkedParam(inc.resourceType, inc.searchParam);
  if (sp.type !== 'reference') throw new OperationOutcomeError(badRequest(`_revinclude needs a reference parameter`));
  const wanted = new Set(resources.map((r) => `${r.resourceType}/${r.id}`));
  const out = [];
  for (const cand of repo.all(inc.resourceType)) {
    for (const tv of paramValues(cand, sp)) {
      const s = typeof tv.value === 'string' ? tv.value : tv.value?.reference;
      if (typeof s === 'string' && wanted.has(normalizeReference(s))) {
        out.push(cand);
        break;
      }
    }
  }
  return out;
}

/** Entries for ``_include``/``_revinclude`` (``:iterate`` followed up to 5 levels), without duplicates. */
export async function includedResources(repo, searchRequest, matches) {
  const seen = new Set(matches.map((r) => `${r.resourceType}/${r.id}`));
  const out = [];
  let frontier = matches;
  for (let depth = 0; depth < MAX_INCLUDE_DEPTH && frontier.length; depth++) {
    const next = [];
    for (const inc of searchRequest.include ?? []) {
      if (depth > 0 && inc.modifier !== Operator.ITERATE) continue;
      for (const r of await includeTargets(repo, frontier, inc)) next.push(r);
    }
    for (const inc of searchRequest.revInclude ?? []) {
      if (depth > 0 && inc.modifier !== Operator.ITERATE) continue;
      for (const r of await revIncludeSources(repo, frontier, inc)) next.push(r);
    }
    const fresh = [];
    for (const r of next) {
      const key = `${r.resourceType}/${r.id}`;
      if (!seen.has(key)) {
        seen.add(key);
        fresh.push(r);
      }
    }
    out.push(...fresh);
    frontier = fresh;
  }
  return out.map((r) => deepClone(r));
}

/** Query pairs as sent, re-encoded, with ``_offset``/``_count`` replaced. */
function pageUrl(base, resourceType, pairs, offset, count) {
  const kept = pairs.filter(([k]) => k !== '_offset' && k !== '_count');
  kept.push(['_count', String(count)]);
  if (offset > 0) kept.push(['_offset', String(offset)]);
  const qs = kept.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  return `${base}/${resourceType}?${qs}`;
}

/**
 * Finish a searchset Bundle from TestRepository.search: ``_elements``, includes, fullUrl, paging links
 * (``_offset``-based, as Medplum's server), ``total`` by the --total policy, ``meta.lastUpdated`` if asked.
 */
export async function finishSearchBundle(bundle, { repo, opts, baseUrl, resourceType, searchRequest, pairs }) {
  const page = bundle.entry ?? [];
  const matches = page.map((e) => e.resource);
  const included = await includedResources(repo, searchRequest, matches);
  const fields = searchRequest.fields;
  const entry = [
    ...page.map((e) => ({
      fullUrl: `${baseUrl}/${e.resource.resourceType}/${e.resource.id}`,
      resource: fields?.length ? subsetResource(e.resource, fields) : e.resource,
      search: { mode: 'match' },
    })),
    ...included.map((r) => ({
      fullUrl: `${baseUrl}/${r.resourceType}/${r.id}`,
      resource: r,
      search: { mode: 'include' },
    })),
  ];
  const { offset, count, total } = bundle.paging;
  const link = [{ relation: 'self', url: pageUrl(baseUrl, resourceType, pairs, offset, count) }];
  if (count > 0) {
    link.push({ relation: 'first', url: pageUrl(baseUrl, resourceType, pairs, 0, count) });
    if (offset + count < total) {
      link.push({ relation: 'next', url: pageUrl(baseUrl, resourceType, pairs, offset + count, count) });
    }
    if (offset > 0) {
      link.push({ relation: 'previous', url: pageUrl(baseUrl, resourceType, pairs, Math.max(0, offset - count), count) });
    }
  }
  const wantsTotal = searchRequest.total === 'accurate' || searchRequest.total === 'estimate';
  const showTotal =
    searchRequest.total !== 'none' && (opts.total === 'always' || (opts.total === 'requested' && wantsTotal));
  const out = { resourceType: 'Bundle', type: 'searchset' };
  if (opts.bundleMeta) out.meta = { lastUpdated: new Date().toISOString() };
  if (showTotal) out.total = total;
  out.link = link;
  if (entry.length) out.entry = entry;
  return out;
}
