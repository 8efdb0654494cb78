#!/usr/bin/env node
// @ts-check
// Regenerates istio/schemas/*.json from published sources, fetched with the Go module proxy:
//   - Kubernetes OpenAPI v3 (module k8s.io/kubernetes, api/openapi-spec/v3/*.json)
//   - Istio CRDs (module istio.io/api, kubernetes/customresourcedefinitions.gen.yaml)
//   - OCI image-spec JSON schemas (module github.com/opencontainers/image-spec, schema/*.json),
//     for the plugin image's layout (index.json, manifest, config)
// Only the kinds our manifests use (and every schema they reference) are kept, and
// "description" texts are dropped to keep the files small. Nothing else is changed:
// the strict "reject unknown fields" behaviour is added at validation time (test/schemas.ts).
//
// Usage: node istio/scripts/update-schemas.js   (needs `go`; run by hand, not by tests)
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

const K8S = { module: 'k8s.io/kubernetes', version: 'v1.34.2' };
const ISTIO = { module: 'istio.io/api', version: 'v1.32.0' };
const OCI = { module: 'github.com/opencontainers/image-spec', version: 'v1.1.1' };
const K8S_FILES = [
  'api/openapi-spec/v3/api__v1_openapi.json',
  'api/openapi-spec/v3/apis__apps__v1_openapi.json',
  'api/openapi-spec/v3/apis__networking.k8s.io__v1_openapi.json',
  'api/openapi-spec/v3/apis__policy__v1_openapi.json',
];
const K8S_KINDS = [
  ['', 'v1', 'ConfigMap'],
  ['', 'v1', 'Namespace'],
  ['', 'v1', 'Secret'],
  ['', 'v1', 'Service'],
  ['', 'v1', 'ServiceAccount'],
  ['apps', 'v1', 'Deployment'],
  ['networking.k8s.io', 'v1', 'NetworkPolicy'],
  ['policy', 'v1', 'PodDisruptionBudget'],
];
const ISTIO_KINDS = [
  ['extensions.istio.io', 'WasmPlugin'],
  ['networking.istio.io', 'Gateway'],
  ['networking.istio.io', 'ServiceEntry'],
  ['networking.istio.io', 'VirtualService'],
  ['networking.istio.io', 'DestinationRule'],
  ['networking.istio.io', 'EnvoyFilter'],
  ['security.istio.io', 'AuthorizationPolicy'],
];
const OUT = path.join(__dirname, '..', 'schemas');

function download(mod) {
  const env = { ...process.env, GOFLAGS: '-modcacherw' };
  const out = execFileSync('go', ['mod', 'download', '-json', `${mod.module}@${mod.version}`], { env, encoding: 'utf8' });
  const info = JSON.parse(out);
  if (info.Error) throw new Error(`${mod.module}@${mod.version}: ${info.Error}`);
  return info; // { Dir, Sum, ... }
}

/** Drops "description" from a schema and every sub-schema (never a property *named* description). */
function strip(schema) {
  if (Array.isArray(schema)) return schema.map(strip);
  if (!schema || typeof schema !== 'object') return schema;
  const out = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'description' && typeof v === 'string') continue;
    if (k === 'properties' || k === 'patternProperties') {
      out[k] = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, strip(s)]));
    } else if (k === 'default' || k === 'enum' || k === 'example' || k === 'required') {
      out[k] = v;
    } else {
      out[k] = strip(v);
    }
  }
  return out;
}

function kubernetes() {
  const info = download(K8S);
  const all = {};
  for (const f of K8S_FILES) {
    const doc = JSON.parse(fs.readFileSync(path.join(info.Dir, f), 'utf8'));
    Object.assign(all, doc.components.schemas);
  }
  const roots = K8S_KINDS.map(([g, v, k]) => {
    const name = Object.keys(all).find((n) =>
      (all[n]['x-kubernetes-group-version-kind'] || []).some((gvk) => gvk.group === g && gvk.version === v && gvk.kind === k),
    );
    if (!name) throw new Error(`no schema for ${g}/${v} ${k}`);
    return name;
  });
  const keep = new Set();
  const visit = (name) => {
    if (keep.has(name)) return;
    if (!all[name]) throw new Error(`dangling $ref ${name}`);
    keep.add(name);
    JSON.stringify(all[name], (k, v) => {
      if (k === '$ref' && typeof v === 'string') visit(v.replace('#/components/schemas/', ''));
      return v;
    });
  };
  roots.forEach(visit);
  const schemas = {};
  for (const n of [...keep].sort()) schemas[n] = strip(all[n]);
  return {
    source: { module: K8S.module, version: K8S.version, sum: info.Sum, files: K8S_FILES },
    kinds: Object.fromEntries(K8S_KINDS.map(([g, v, k], i) => [`${g ? g + '/' : ''}${v}/${k}`, roots[i]])),
    components: { schemas },
  };
}

function istio() {
  const info = download(ISTIO);
  const file = 'kubernetes/customresourcedefinitions.gen.yaml';
  const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(info.Dir, file), 'utf8')).map((d) => d.toJSON());
  const crds = {};
  for (const [group, kind] of ISTIO_KINDS) {
    const crd = docs.find((d) => d && d.kind === 'CustomResourceDefinition' && d.spec.group === group && d.spec.names.kind === kind);
    if (!crd) throw new Error(`no CRD for ${group} ${kind}`);
    for (const v of crd.spec.versions) {
      if (!v.served) continue;
      crds[`${group}/${v.name}/${kind}`] = { deprecated: !!v.deprecated, openAPIV3Schema: strip(v.schema.openAPIV3Schema) };
    }
  }
  return { source: { module: ISTIO.module, version: ISTIO.version, sum: info.Sum, file }, crds };
}

function ociImageSpec() {
  const info = download(OCI);
  const dir = path.join(info.Dir, 'schema');
  const files = {};
  for (const f of fs
    .readdirSync(dir)
    .filter((n) => n.endsWith('.json'))
    .sort()) {
    files[f] = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  }
  return { source: { module: OCI.module, version: OCI.version, sum: info.Sum, dir: 'schema' }, files };
}

fs.mkdirSync(OUT, { recursive: true });
fs.writeFileSync(path.join(OUT, 'oci-image-spec.json'), JSON.stringify(ociImageSpec(), null, 1) + '\n');
fs.writeFileSync(path.join(OUT, 'kubernetes.json'), JSON.stringify(kubernetes(), null, 1) + '\n');
fs.writeFileSync(path.join(OUT, 'istio-crds.json'), JSON.stringify(istio(), null, 1) + '\n');
console.log(`wrote ${fs.readdirSync(OUT).join(', ')} in ${OUT}`);
