/**
 * A locally generated RS256 key pair, its JWKS, tokens signed with it, and the Envoy
 * `jwt_authn` filter that verifies them and leaves the payload in dynamic metadata
 * (`payload_in_metadata: payload`, as Istio's RequestAuthentication does) for the plugin's
 * `{{jwt.CLAIM}}` templates.
 */
import * as crypto from 'crypto';

export const ISSUER = 'https://issuer.llm-ratelimit.test';

export interface Signer {
  jwks: string;
  sign(claims: Record<string, unknown>): string;
  /** The jwt_authn HTTP filter for Envoy's http_filters, placed before the Wasm filter. */
  filter(): object;
}

export function newSigner(): Signer {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' };
  const jwks = JSON.stringify({ keys: [jwk] });
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return {
    jwks,
    sign(claims) {
      const head = `${b64({ alg: 'RS256', kid: 'k1', typ: 'JWT' })}.${b64({ iss: ISSUER, exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
      return `${head}.${crypto.sign('RSA-SHA256', Buffer.from(head), privateKey).toString('base64url')}`;
    },
    filter() {
      return {
        name: 'envoy.filters.http.jwt_authn',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
          providers: { issuer: { issuer: ISSUER, payload_in_metadata: 'payload', local_jwks: { inline_string: jwks } } },
          // A request without a valid token is answered 401 by Envoy: it never reaches the plugin.
          rules: [{ match: { prefix: '/' }, requires: { provider_name: 'issuer' } }],
        },
      };
    },
  };
}
