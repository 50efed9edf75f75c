// The engine fetches `ADD <url>` itself, on the host's network (loopback included: the
// audit fetched berth's own /openapi.json into an image), although RUN has no network.
// A Dockerfile that would reach the network is refused before anything is built, in a
// JSON body and inside a tar build context alike; so is a context whose Dockerfile could be
// read one way by berth and another by the engine.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminSession, createTestApp, json, type Session, type TestApp } from '../helpers/app.js';
import { BASE_IMAGE } from '../helpers/ssh-machines.js';

let t: TestApp;
let admin: Session;
/** A server on this host's loopback that counts what reaches it. */
let bait: http.Server;
let baitUrl: string;
let baitHits = 0;
beforeAll(async () => {
  t = await createTestApp();
  admin = await adminSession(t);
  bait = http.createServer((_req, res) => {
    baitHits++;
    res.end('secret\n');
  });
  await new Promise<void>((resolve) => bait.listen(0, '127.0.0.1', resolve));
  baitUrl = `http://127.0.0.1:${(bait.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await t.close();
  await new Promise((resolve) => bait.close(resolve));
});

const postJson = (name: string, dockerfile: string) => t.app.inject({ method: 'POST', url: '/v1/images', headers: admin.auth, payload: { name, dockerfile } });

/** A tar build context of `files` (name → content; a null content is a symlink to hello.txt). */
function tarOf(files: Record<string, string | null>, order = Object.keys(files)): Buffer {
  const dir = fs.mkdtempSync(path.join(t.dataDir, 'context-'));
  for (const [name, content] of Object.entries(files)) {
    if (content === null) fs.symlinkSync('hello.txt', path.join(dir, name));
    else fs.writeFileSync(path.join(dir, name), content);
  }
  return execFileSync('tar', ['-C', dir, '-c', ...order], { maxBuffer: 64 << 20 });
}
const postTar = (name: string, tarball: Buffer) =>
  t.app.inject({ method: 'POST', url: `/v1/images?name=${name}`, headers: { ...admin.auth, 'content-type': 'application/x-tar' }, payload: tarball });

describe('a Dockerfile that would reach the network', () => {
  it("is refused (400 dockerfile_not_allowed) as JSON: ADD of berth's own address, a git source, RUN --network", async () => {
    const cases = [
      `FROM ${BASE_IMAGE}\nADD ${baitUrl}/openapi.json /srv/stolen.json\n`,
      `FROM ${BASE_IMAGE}\nadd \\\n  --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d \\\n  ${baitUrl}/x /x\n`,
      `FROM ${BASE_IMAGE}\nADD ["${baitUrl}/x", "/x"]\n`,
      `FROM ${BASE_IMAGE}\nONBUILD ADD ${baitUrl}/x /x\n`,
      `FROM ${BASE_IMAGE}\nARG U=${baitUrl}/x\nADD $U /x\n`,
      `FROM ${BASE_IMAGE}\nADD git@github.com:moby/moby.git /src\n`,
      `FROM ${BASE_IMAGE}\nRUN --network=host true\n`,
    ];
    for (const [i, dockerfile] of cases.entries()) {
      const res = await postJson(`json-${i}`, dockerfile);
      expect(res.statusCode, dockerfile).toBe(400);
      expect(json(res)).toMatchObject({ type: expect.stringMatching(/\/problems\/dockerfile_not_allowed$/), code: 'dockerfile_not_allowed', detail: expect.stringMatching(/^Dockerfile line \d+: /) });
    }
  });

  it('is refused inside a tar build context too', async () => {
    const remote = tarOf({ Dockerfile: `FROM ${BASE_IMAGE}\nCOPY hello.txt /x\nADD ${baitUrl}/openapi.json /y\n`, 'hello.txt': 'hi\n' });
    expect(json(await postTar('tar-remote', remote))).toMatchObject({ status: 400, code: 'dockerfile_not_allowed' });
    const gzipped = execFileSync('gzip', ['-c'], { input: tarOf({ Dockerfile: `FROM ${BASE_IMAGE}\nRUN --network=host true\n` }) });
    expect(json(await postTar('tar-network', gzipped))).toMatchObject({ status: 400, code: 'dockerfile_not_allowed' });
  });

  it('is refused when berth cannot tell which Dockerfile the engine builds: twice in the tar, a link, or too large to read', async () => {
    // `Dockerfile` and `./Dockerfile`: the engine builds the one extracted last.
    const dir = fs.mkdtempSync(path.join(t.dataDir, 'twice-'));
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${BASE_IMAGE}\n`);
    const twice = execFileSync('tar', ['-C', dir, '-c', 'Dockerfile', './Dockerfile']);
    expect(json(await postTar('tar-twice', twice))).toMatchObject({ status: 400, code: 'invalid_build_context', detail: expect.stringMatching(/more than once/) });
    fs.mkdirSync(path.join(dir, 'a'));
    const dotted = execFileSync('tar', ['-C', dir, '-c', 'Dockerfile', 'a/../Dockerfile']);
    expect(json(await postTar('tar-dotted', dotted))).toMatchObject({ status: 400, code: 'invalid_build_context', detail: expect.stringMatching(/more than once/) });
    const linked = tarOf({ 'hello.txt': `FROM ${BASE_IMAGE}\nADD ${baitUrl}/x /x\n`, Dockerfile: null });
    expect(json(await postTar('tar-link', linked))).toMatchObject({ status: 400, code: 'invalid_build_context', detail: expect.stringMatching(/regular file/) });
    const huge = tarOf({ Dockerfile: `FROM ${BASE_IMAGE}\n${'# padding\n'.repeat(200_000)}ADD ${baitUrl}/x /x\n` });
    expect(json(await postTar('tar-huge', huge))).toMatchObject({ status: 400, code: 'invalid_build_context', detail: expect.stringMatching(/cannot be read/) });
  });

  it('leaves nothing behind: no image recorded, and nothing reached the network', async () => {
    expect(json(await t.app.inject({ method: 'GET', url: '/v1/images', headers: admin.auth })).items).toEqual([]);
    expect(baitHits).toBe(0);
  });
});
