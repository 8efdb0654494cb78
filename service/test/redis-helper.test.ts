import { rawCommand, startRedis } from '../../test-support/redis';

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
