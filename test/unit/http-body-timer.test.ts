/**
 * timedFetch's deadline for the body of an answer ends once the body has been read: a process
 * that runs on (an evaluation after a dataset download) must not print "waiting for … no
 * answer" about a request answered long ago. A body that does not arrive still gets the line.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { timedFetch } from '../../src/hub/http';

let server: http.Server;
let url: string;
const saved = process.env.GPTQ_FORGE_HTTP_SLOW_MS;

beforeAll(async () => {
  process.env.GPTQ_FORGE_HTTP_SLOW_MS = '100';
  server = http.createServer((req, res) => {
    if (req.url === '/stall') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"a":'); // the rest never comes
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"a":1}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  if (saved === undefined) delete process.env.GPTQ_FORGE_HTTP_SLOW_MS;
  else process.env.GPTQ_FORGE_HTTP_SLOW_MS = saved;
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function captureStderr(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  return { lines, restore: () => spy.mockRestore() };
}

test('an answer read in full: no "waiting" line however long the process runs on', async () => {
  const err = captureStderr();
  try {
    for (const read of ['json', 'text', 'arrayBuffer'] as const) {
      const res = await timedFetch(`${url}/ok`);
      const body: unknown = await res[read]();
      expect(read === 'json' ? body : undefined).toEqual(read === 'json' ? { a: 1 } : undefined);
    }
    await sleep(400);
    expect(err.lines.filter((l) => l.includes('waiting for'))).toEqual([]);
  } finally {
    err.restore();
  }
});

test('a body that stalls still gets its "waiting" line', async () => {
  const err = captureStderr();
  try {
    const res = await timedFetch(`${url}/stall`);
    const pending = res.text().catch(() => undefined);
    await sleep(400);
    expect(err.lines.some((l) => l.startsWith(`gptq: waiting for GET ${url}/stall: no answer for 0.1 s`))).toBe(true);
    await res.body?.cancel().catch(() => undefined);
    server.closeAllConnections();
    await pending;
  } finally {
    err.restore();
  }
});
