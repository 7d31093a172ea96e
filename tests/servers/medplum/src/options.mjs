// Command-line flags, environment variables and the three profiles (README.md documents each one).

/** What each profile sets; any flag given on the command line overrides its profile's value. */
export const PROFILES = {
  // A permissive server: client-assigned ids, create-by-PUT, atomic unbounded transactions, total always.
  lenient: {
    ids: 'any',
    updateCreate: true,
    transactions: 'atomic',
    txMaxConditionalEntries: 0,
    txMaxUpdates: 0,
    total: 'always',
    bundleMeta: true,
  },
  // Medplum's own rules, without its transaction feature: transactions are processed as batches.
  rules: {
    ids: 'uuid',
    updateCreate: false,
    transactions: 'batch',
    txMaxConditionalEntries: 0,
    txMaxUpdates: 0,
    total: 'requested',
    bundleMeta: false,
  },
  // Medplum's rules with its transaction feature on: atomic, with Medplum's limits.
  'rules-tx': {
    ids: 'uuid',
    updateCreate: false,
    transactions: 'atomic',
    txMaxConditionalEntries: 8,
    txMaxUpdates: 50,
    total: 'requested',
    bundleMeta: false,
  },
};

const COMMON = {
  host: '127.0.0.1',
  port: 0,
  basePath: '/fhir/R4',
  defaultCount: 20,
  maxCount: 1000,
  validate: 'strict',
  checkReferences: false,
  skipUnchanged: false,
  types: null, // null: every FHIR R4 resource type
  without: [], // features switched off (WITHOUT_FEATURES), for tests of clients that must refuse such servers
  withoutSearchParams: [], // Type.code search parameters switched off
  log: false,
};

/** Features ``--without`` can switch off; metadata then says so and requests using them are refused. */
export const WITHOUT_FEATURES = ['conditional-create', 'conditional-update', 'versioned-update', 'batch', 'transaction'];

/** flag name -> [option key, kind, allowed values] */
const FLAGS = {
  profile: ['profile', 'enum', Object.keys(PROFILES)],
  host: ['host', 'string'],
  port: ['port', 'int'],
  'base-path': ['basePath', 'string'],
  ids: ['ids', 'enum', ['any', 'uuid']],
  'update-create': ['updateCreate', 'bool'],
  transactions: ['transactions', 'enum', ['atomic', 'batch']],
  'tx-max-conditional-entries': ['txMaxConditionalEntries', 'int'],
  'tx-max-updates': ['txMaxUpdates', 'int'],
  total: ['total', 'enum', ['always', 'requested', 'never']],
  'bundle-meta': ['bundleMeta', 'bool'],
  'default-count': ['defaultCount', 'int'],
  'max-count': ['maxCount', 'int'],
  validate: ['validate', 'enum', ['strict', 'off']],
  'check-references': ['checkReferences', 'bool'],
  'skip-unchanged': ['skipUnchanged', 'bool'],
  types: ['types', 'list'],
  without: ['without', 'list'],
  'without-search-params': ['withoutSearchParams', 'list'],
  log: ['log', 'bool'],
};

export class UsageError extends Error {}

function convert(flag, kind, allowed, raw) {
  switch (kind) {
    case 'int': {
      if (!/^\d+$/.test(raw)) throw new UsageError(`--${flag} needs a whole number, got "${raw}"`);
      return Number.parseInt(raw, 10);
    }
    case 'bool': {
      if (['true', '1', 'yes', 'on'].includes(raw)) return true;
      if (['false', '0', 'no', 'off'].includes(raw)) return false;
      throw new UsageError(`--${flag} needs true or false, got "${raw}"`);
    }
    case 'enum':
      if (!allowed.includes(raw)) throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}; got "${raw}"`);
      return raw;
    case 'list':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    default:
      return raw;
  }
}

/**
 * Options from argv (``--flag value``, ``--flag=value``, ``--flag`` / ``--no-flag`` for booleans) over the
 * environment (MEDPLUM_SERVER_PROFILE, MEDPLUM_SERVER_PORT) over the chosen profile over the common defaults.
 */
export function parseOptions(argv, env = process.env) {
  const given = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      given.help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument "${arg}" (see --help)`);
    let name = arg.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    let negated = false;
    if (!(name in FLAGS) && name.startsWith('no-') && name.slice(3) in FLAGS) {
      name = name.slice(3);
      negated = true;
    }
    const spec = FLAGS[name];
    if (!spec) throw new UsageError(`unknown flag --${name} (see --help)`);
    const [key, kind, allowed] = spec;
    if (kind === 'bool' && value === undefined) {
      given[key] = !negated;
      continue;
    }
    if (negated) throw new UsageError(`--no-${name} takes no value`);
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
    }
    given[key] = convert(name, kind, allowed, value);
  }
  if (given.profile === undefined && env.MEDPLUM_SERVER_PROFILE) {
    given.profile = convert('profile', 'enum', FLAGS.profile[2], env.MEDPLUM_SERVER_PROFILE);
  }
  if (given.port === undefined && env.MEDPLUM_SERVER_PORT) {
    given.port = convert('port', 'int', null, env.MEDPLUM_SERVER_PORT);
  }
  const profile = given.profile ?? 'rules';
  const opts = { ...COMMON, ...PROFILES[profile], ...given, profile };
  for (const f of opts.without) {
    if (!WITHOUT_FEATURES.includes(f)) {
      throw new UsageError(`--without takes ${WITHOUT_FEATURES.join(', ')}; got "${f}"`);
    }
  }
  for (const sp of opts.withoutSearchParams) {
    if (!/^[A-Z][A-Za-z]+\.[A-Za-z_][A-Za-z0-9_-]*$/.test(sp)) {
      throw new UsageError(`--without-search-params takes Type.code names; got "${sp}"`);
    }
  }
  if (!opts.basePath.startsWith('/')) opts.basePath = '/' + opts.basePath;
  opts.basePath = opts.basePath.replace(/\/+$/, '');
  if (opts.defaultCount > opts.maxCount) {
    if (given.defaultCount !== undefined) throw new UsageError('--default-count may not exceed --max-count');
    opts.defaultCount = opts.maxCount;
  }
  return opts;
}

export const HELP = `Usage: node src/main.mjs [--profile lenient|rules|rules-tx] [--port N] [flags]

A test-only FHIR R4 server: Medplum's FHIR router and in-memory repository over HTTP,
with Medplum's strict StructureDefinition validator on every write. See README.md.

  --profile P                     lenient | rules (default) | rules-tx   (env MEDPLUM_SERVER_PROFILE)
  --host H                        listen address (default 127.0.0.1)
  --port N                        0 = a free port, reported in the ready line (env MEDPLUM_SERVER_PORT)
  --base-path /fhir/R4            FHIR base path
  --ids any|uuid                  ids a client may choose in PUT Type/id (rules: uuid)
  --[no-]update-create            PUT to an id that does not exist creates it (lenient) or is 404 (rules)
  --transactions atomic|batch     a transaction Bundle is atomic, or processed entry by entry as a batch
  --tx-max-conditional-entries N  atomic transactions holding a conditional entry: at most N entries (0 = no limit)
  --tx-max-updates N              atomic transactions: at most N updates (PUT) (0 = no limit)
  --total always|requested|never  Bundle.total in searches; requested = only with _total=accurate|estimate or _summary=count
  --[no-]bundle-meta              searchset Bundles carry meta.lastUpdated (the server's clock)
  --default-count N               page size without _count (20)
  --max-count N                   largest page (1000); a larger _count is cut to it
  --validate strict|off           Medplum's StructureDefinition validator on every write (strict)
  --[no-]check-references         refuse writes whose relative references do not resolve, or that keep a urn:uuid
  --[no-]skip-unchanged           an update identical to the current version makes no new version (as Medplum's server)
  --types A,B,...                 serve only these resource types (default: every R4 resource type)
  --without F,...                 switch features off: conditional-create, conditional-update, versioned-update,
                                  batch, transaction (metadata says so; requests using them are refused)
  --without-search-params T.c,... switch search parameters off (e.g. DetectedIssue.identifier)
  --[no-]log                      one line per request on stderr
`;
