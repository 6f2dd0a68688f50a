#!/usr/bin/env node
// `tamma-js-build SRC -o OUT`: SRC (an ES module exporting `providerApi` and
// `embeddings`) -> a Tamma provider component, with the WIT world that travels
// in this package and the componentize-js it pins. The same flags as the
// repository's Makefile: world `tamma:provider/provider`, and no `fetch-event`
// (a provider exports no HTTP handler).
//
// componentize-js resolves only relative imports inside the current directory,
// so run it from the project's root and import this package by its path
// (`../node_modules/tamma-provider/tamma.js`).

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));

function usage(message) {
  console.error(`tamma-js-build: ${message}\nusage: tamma-js-build SRC.js -o OUT.wasm`);
  process.exit(2);
}

const args = process.argv.slice(2);
let source;
let out;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-o' || args[i] === '--out') out = args[++i];
  else if (source === undefined) source = args[i];
  else usage(`unexpected argument ${JSON.stringify(args[i])}`);
}
if (source === undefined || out === undefined) usage('SRC and -o OUT are required');

try {
  const { component } = await componentize({
    sourcePath: resolve(source),
    witPath: join(here, 'wit'),
    worldName: 'tamma:provider/provider',
    disableFeatures: ['fetch-event'],
  });
  mkdirSync(dirname(resolve(out)), { recursive: true });
  writeFileSync(out, component);
  console.error(`tamma-js-build: wrote ${out} (${component.byteLength} bytes)`);
} catch (e) {
  console.error(`tamma-js-build: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
}
