/**
 * The one entry to TypeBox for itd's modules. TypeBox ships as hundreds of small ES modules, whose loading
 * alone would double `itd --help`'s cold start, so scripts/build.mjs bundles this file (with the
 * parts of TypeBox it uses) into a single dist/io/typebox.js; under tsx it loads TypeBox directly.
 */
export { Type, type Static, type TSchema } from '@sinclair/typebox';
export { Value } from '@sinclair/typebox/value';
