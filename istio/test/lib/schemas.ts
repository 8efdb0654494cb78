// Validates Kubernetes objects the way `kubectl apply` with strict field validation would,
// as far as a JSON-schema validator can: against the published schemas in istio/schemas/
// (Kubernetes OpenAPI v3 for built-in kinds, Istio's CRD openAPIV3Schema for Istio kinds;
// regenerate them with istio/scripts/update-schemas.js).
//
// What is added here, and why:
// - Unknown fields are rejected (additionalProperties: false on every object schema that
//   lists its properties), as the API server does with fieldValidation=Strict (kubectl's
//   default). Schemas marked x-kubernetes-preserve-unknown-fields (e.g. WasmPlugin
//   pluginConfig) keep accepting anything, as the API server does.
// - A CRD schema does not describe apiVersion/kind/metadata; the API server checks them for
//   every object, so they are added (metadata against Kubernetes' ObjectMeta).
// - x-kubernetes-list-type map/set: duplicate keys are rejected, as the API server does.
// Not evaluated: CEL rules (x-kubernetes-validations) and the API server's Go-coded
// validation (e.g. DNS-1123 names), which need a real API server.
import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import * as fs from 'fs';
import * as path from 'path';

type Schema = Record<string, any>;

const SCHEMA_DIR = path.join(__dirname, '..', '..', 'schemas');
const OBJECT_META = 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta';

function load(file: string): any {
  return JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, file), 'utf8'));
}

/** Returns a deep copy of `schema` in which every object schema that lists its properties rejects others. */
export function strictify(schema: any, isCrd: boolean): any {
  if (Array.isArray(schema)) return schema.map((s) => strictify(s, isCrd));
  if (!schema || typeof schema !== 'object') return schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'properties' || k === 'patternProperties') {
      out[k] = Object.fromEntries(Object.entries(v as Schema).map(([p, s]) => [p, strictify(s, isCrd)]));
    } else if (k === 'default' || k === 'enum' || k === 'example' || k === 'required' || k === 'x-kubernetes-list-map-keys') {
      out[k] = v;
    } else {
      out[k] = strictify(v, isCrd);
    }
  }
  const preserve = out['x-kubernetes-preserve-unknown-fields'] === true;
  // In a structural (CRD) schema an object without properties keeps no fields at all.
  const listsFields = out.properties !== undefined || (isCrd && out.type === 'object');
  if (listsFields && !preserve && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

const INT32 = { type: 'number' as const, validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 };
const INT64 = { type: 'number' as const, validate: (n: number) => Number.isSafeInteger(n) };

function newAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: true });
  ajv.addFormat('int32', INT32);
  ajv.addFormat('int64', INT64);
  for (const f of ['byte', 'date-time', 'double', 'int-or-string', 'float', 'uint32', 'uint64', 'binary', 'date']) {
    ajv.addFormat(f, true);
  }
  // Lists the API server merges by key: keys must be unique.
  ajv.addKeyword({
    keyword: 'x-kubernetes-list-type',
    type: 'array',
    errors: true,
    validate: function listType(this: unknown, type: string, data: unknown[], parent?: Schema): boolean {
      const self = listType as unknown as { errors: Partial<ErrorObject>[] };
      let keyOf: (x: unknown) => string;
      if (type === 'set') keyOf = (x) => JSON.stringify(x);
      else if (type === 'map') {
        const keys: string[] = (parent && parent['x-kubernetes-list-map-keys']) || [];
        keyOf = (x) => JSON.stringify(keys.map((k) => (x as Schema)?.[k]));
      } else return true;
      const seen = new Set<string>();
      for (const item of data) {
        const k = keyOf(item);
        if (seen.has(k)) {
          self.errors = [{ keyword: 'x-kubernetes-list-type', message: `duplicate entry with key ${k} in a list of type ${type}`, params: {} }];
          return false;
        }
        seen.add(k);
      }
      return true;
    },
  });
  ajv.addKeyword({ keyword: 'x-kubernetes-list-map-keys' });
  return ajv;
}

export interface Validation {
  valid: boolean;
  errors: string[];
}

export interface Validator {
  /** apiVersion/kind pairs this validator knows, e.g. "apps/v1 Deployment". */
  kinds(): string[];
  validate(obj: any): Validation;
  /** Where the schemas come from (module@version and checksum), for messages. */
  sources: { kubernetes: string; istio: string };
}

export function createValidator(): Validator {
  const k8s = load('kubernetes.json');
  const istio = load('istio-crds.json');
  const ajv = newAjv();
  ajv.addSchema({ $id: 'k8s', components: { schemas: strictify(k8s.components.schemas, false) } });
  const ref = (name: string) => ({ $ref: `k8s#/components/schemas/${name}` });
  const compiled = new Map<string, ValidateFunction>();

  const identity = (apiVersion: string, kind: string): Schema => ({
    apiVersion: { type: 'string', const: apiVersion },
    kind: { type: 'string', const: kind },
  });

  for (const [gvk, name] of Object.entries<string>(k8s.kinds)) {
    const parts = gvk.split('/');
    const kind = parts.pop()!;
    const apiVersion = parts.join('/');
    compiled.set(
      `${apiVersion} ${kind}`,
      ajv.compile({
        allOf: [ref(name), { type: 'object', required: ['apiVersion', 'kind'], properties: identity(apiVersion, kind) }],
      }),
    );
  }
  for (const [gvk, crd] of Object.entries<any>(istio.crds)) {
    const parts = gvk.split('/');
    const kind = parts.pop()!;
    const apiVersion = parts.join('/');
    const root = strictify(crd.openAPIV3Schema, true);
    root.properties = { ...identity(apiVersion, kind), metadata: ref(OBJECT_META), ...root.properties };
    root.required = ['apiVersion', 'kind', ...(root.required || [])];
    compiled.set(`${apiVersion} ${kind}`, ajv.compile(root));
  }

  return {
    kinds: () => [...compiled.keys()],
    sources: {
      kubernetes: `${k8s.source.module}@${k8s.source.version} (${k8s.source.sum})`,
      istio: `${istio.source.module}@${istio.source.version} (${istio.source.sum})`,
    },
    validate(obj: any): Validation {
      const key = `${obj?.apiVersion} ${obj?.kind}`;
      const fn = compiled.get(key);
      if (!fn) return { valid: false, errors: [`no schema for ${key}; known: ${[...compiled.keys()].join(', ')}`] };
      const valid = fn(obj) as boolean;
      const errors = (fn.errors || []).map(
        (e) => `${e.instancePath || '/'} ${e.message}${e.params && (e.params as any).additionalProperty ? ` (${(e.params as any).additionalProperty})` : ''}`,
      );
      return { valid, errors };
    },
  };
}
