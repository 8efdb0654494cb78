import { rawCommand, startRedis } from '../../test-support/redis';
import { createServer } from 'node:net';
import { holdPort } from '../../test-support/ports';

test('startRedis: PING answers, stop() ends the process by PID', async () => {
  const r = await startRedis();
  expect(await rawCommand(r.port, 'PING')).toBe('+PONG\r\n');
  await r.stop();
  expect(() => process.kill(r.pid, 0)).toThrow();
  await expect(rawCommand(r.port, 'PING', 300)).rejects.toThrow();
});

test('without redis-server on the PATH: a clear error naming the apt-get command', async () => {
  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    await expect(startRedis()).rejects.toThrow('apt-get install -y redis-server');
  } finally {
    process.env.PATH = path;
  }
});

test('a released held port can be bound at once (no TIME_WAIT left on it by another connection)', async () => {
  // connect()-chosen local ports reuse ports that old connections left in TIME_WAIT, which a
  // listener (redis-server included) cannot bind for a minute: about 1 in 70 before the fix.
  const refused: number[] = [];
  for (let i = 0; i < 600; i++) {
    const h = await holdPort();
    await h.release();
    const bound = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(h.port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (!bound) refused.push(h.port);
  }
  expect(refused).toEqual([]);
}, 60_000);
