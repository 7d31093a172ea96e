// GET [base]/metadata: a CapabilityStatement that tells the truth about the running profile.
// (@medplum/fhir-router has no metadata route; Medplum's server builds its own statement.)
import { supportedSearchParams, targetsOf } from './schema.mjs';

const TYPE_INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];

function transactionDoc(opts) {
  if (opts.transactions !== 'atomic') {
    return 'Not supported: a Bundle of type transaction is processed entry by entry as a batch and answered 200 with a transaction-response whose failed entries carry their own status and OperationOutcome.';
  }
  const limits = [];
  if (opts.txMaxConditionalEntries > 0) {
    limits.push(`a transaction holding a conditional entry (If-None-Exist create, conditional update or delete) may have at most ${opts.txMaxConditionalEntries} entries`);
  }
  if (opts.txMaxUpdates > 0) limits.push(`at most ${opts.txMaxUpdates} update (PUT) entries`);
  return `Atomic: all entries succeed or none is kept; urn:uuid references are resolved.${limits.length ? ' Limits: ' + limits.join('; ') + '; a transaction over a limit is refused with 400 and an OperationOutcome.' : ' No size limits.'}`;
}

export function capabilityStatement(opts, types, baseUrl, software) {
  const served = new Set(types);
  const without = new Set(opts.without);
  // every reference parameter pointing at each type, for searchRevInclude
  const revIncludes = new Map();
  for (const source of types) {
    for (const sp of supportedSearchParams(source)) {
      if (sp.type !== 'reference') continue;
      for (const target of targetsOf(sp)) {
        if (!served.has(target)) continue;
        if (!revIncludes.has(target)) revIncludes.set(target, []);
        revIncludes.get(target).push(`${source}:${sp.code}`);
      }
    }
  }
  const resource = types.map((type) => {
    const params = supportedSearchParams(type);
    return {
      type,
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: TYPE_INTERACTIONS.map((code) => ({ code })),
      versioning: without.has('versioned-update') ? 'versioned' : 'versioned-update',
      readHistory: true,
      updateCreate: opts.updateCreate,
      conditionalCreate: !without.has('conditional-create'),
      conditionalRead: 'not-supported',
      conditionalUpdate: !without.has('conditional-update'),
      conditionalDelete: 'single',
      referencePolicy: ['literal', 'local'],
      searchInclude: params.filter((sp) => sp.type === 'reference').map((sp) => `${type}:${sp.code}`),
      searchRevInclude: revIncludes.get(type) ?? [],
      searchParam: params.map((sp) => ({
        name: sp.code,
        ...(sp.url ? { definition: sp.url } : {}),
        type: sp.type,
      })),
    };
  });
  const idRule =
    opts.ids === 'uuid'
      ? 'Resource ids are UUIDs assigned by the server; PUT Type/id with an id that is not a UUID is refused (400).'
      : 'A client may choose ids ([A-Za-z0-9-.]{1,64}) with PUT Type/id.';
  const createRule = opts.updateCreate
    ? 'PUT to an id that does not exist creates the resource (201).'
    : 'PUT to an id that does not exist is refused (404): create with POST (or conditional update / If-None-Exist).';
  const totalRule = {
    always: 'Search Bundles always carry total.',
    requested: 'Search Bundles carry total only when asked (_total=accurate or estimate, _summary=count).',
    never: 'Search Bundles never carry total.',
  }[opts.total];
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: software.started,
    publisher: 'ptbill test suite',
    kind: 'instance',
    software: { name: software.name, version: software.version },
    implementation: { description: `ptbill Medplum test server, profile ${opts.profile}`, url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        documentation: [
          `Profile ${opts.profile}.`,
          idRule,
          createRule,
          `Every write is ${opts.validate === 'strict' ? 'validated by Medplum\'s strict StructureDefinition validator (400 with an OperationOutcome when invalid)' : 'stored without validation'}.`,
          `Paging by next links (_offset); _count default ${opts.defaultCount}, at most ${opts.maxCount}.`,
          totalRule,
          'Result parameters: _count, _offset, _sort, _summary=count, _total, _elements, _include, _revinclude (:iterate).',
          `Transactions: ${without.has('transaction') ? 'refused (400).' : transactionDoc(opts)}`,
          ...(without.size ? [`Switched off: ${[...without].join(', ')}.`] : []),
        ].join(' '),
        resource,
        interaction: [
          ...(opts.transactions === 'atomic' && !without.has('transaction')
            ? [{ code: 'transaction', documentation: transactionDoc(opts) }]
            : []),
          ...(without.has('batch') ? [] : [{ code: 'batch' }]),
        ],
      },
    ],
  };
}
