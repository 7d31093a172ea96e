#!/usr/bin/env node
// Entry point: node src/main.mjs --profile rules --port 0   (README.md: profiles and flags)
// Prints one ready line on stdout once listening:
//   ptbill-medplum-server ready url=http://127.0.0.1:<port>/fhir/R4 port=<port> profile=<profile>
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { FhirHttpServer } from './http.mjs';
import { HELP, parseOptions, UsageError } from './options.mjs';
import { TestRepository } from './repo.mjs';
import { disableSearchParams, loadSchema } from './schema.mjs';

function version(pkg) {
  const url = new URL(`../node_modules/${pkg}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8')).version;
}

function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ptbill-medplum-server: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (opts.help) {
    process.stdout.write(HELP);
    return;
  }
  const { resourceTypes } = loadSchema();
  disableSearchParams(opts.withoutSearchParams);
  let types = resourceTypes;
  if (opts.types) {
    const unknown = opts.types.filter((t) => !resourceTypes.includes(t));
    if (unknown.length) {
      process.stderr.write(`ptbill-medplum-server: unknown resource types in --types: ${unknown.join(', ')}\n`);
      process.exit(2);
    }
    types = [...opts.types].sort();
  }
  const software = {
    name: `ptbill Medplum test server (@medplum/fhir-router ${version('@medplum/fhir-router')}, @medplum/core ${version('@medplum/core')})`,
    version: version('@medplum/fhir-router'),
    started: new Date().toISOString(),
  };
  const repo = new TestRepository(opts, new Set(types));
  const app = new FhirHttpServer(opts, repo, types, software);
  const server = createServer(app.listener());
  server.keepAliveTimeout = 65_000; // longer than clients keep idle connections, so none is reset under them
  server.headersTimeout = 70_000;
  server.on('error', (err) => {
    process.stderr.write(`ptbill-medplum-server: cannot listen on ${opts.host}:${opts.port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(opts.port, opts.host, () => {
    const { port } = server.address();
    app.port = port;
    const url = `http://${opts.host}:${port}${opts.basePath}`;
    process.stdout.write(`ptbill-medplum-server ready url=${url} port=${port} profile=${opts.profile}\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
