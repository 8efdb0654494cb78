/** The admin port in tests: /buckets needs an admin token, /metrics is there too. */
import type { RunningService } from '../../src/start';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** GET on the admin port with the admin token. */
export function adminFetch(svc: Pick<RunningService, 'adminUrl'>, path: string): Promise<Response> {
  return fetch(`${svc.adminUrl}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
}
