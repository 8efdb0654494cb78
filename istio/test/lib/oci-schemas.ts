// The OCI image-spec's own JSON schemas (istio/schemas/oci-image-spec.json, from the Go module
// github.com/opencontainers/image-spec, see scripts/update-schemas.js), for checking the files
// of an OCI image layout. They are draft-04 schemas whose nested "id"s would make their relative
// $refs resolve to the wrong place; as the spec's Go validator does with its own loader, each
// file is registered under its file name (nested ids dropped), so "defs.json#/..." finds defs.json.
import Ajv, { ValidateFunction } from 'ajv';
import * as fs from 'fs';
import * as path from 'path';

const BASE = 'https://image-spec.invalid/schema/';

function dropIds(s: any): any {
  if (Array.isArray(s)) return s.map(dropIds);
  if (!s || typeof s !== 'object') return s;
  const out: Record<string, any> = {};
  for (const [k, v] of Object.entries(s)) {
    if ((k === 'id' && typeof v === 'string') || k === '$schema') continue;
    out[k] =
      k === 'properties' || k === 'patternProperties' || k === 'definitions'
        ? Object.fromEntries(Object.entries(v as object).map(([p, x]) => [p, dropIds(x)]))
        : dropIds(v);
  }
  return out;
}

export type OciDoc = 'image-layout-schema.json' | 'image-index-schema.json' | 'image-manifest-schema.json' | 'config-schema.json';

export function createOciValidator(): (doc: OciDoc, value: unknown) => string[] {
  const spec = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'schemas', 'oci-image-spec.json'), 'utf8'));
  const ajv = new Ajv({ allErrors: true, strict: false });
  ajv.addFormat('uri', true);
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i);
  for (const [file, schema] of Object.entries<any>(spec.files)) {
    ajv.addSchema({ ...dropIds(schema), $id: BASE + file });
  }
  const cache = new Map<string, ValidateFunction>();
  return (doc, value) => {
    let fn = cache.get(doc);
    if (!fn) {
      fn = ajv.getSchema(BASE + doc);
      if (!fn) throw new Error(`no OCI schema ${doc}`);
      cache.set(doc, fn);
    }
    return fn(value) ? [] : (fn.errors || []).map((e) => `${e.instancePath || '/'} ${e.message}`);
  };
}
