import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { embeddedSocketPath } from '../../src/infra/embedded-mariadb.js';

describe("the embedded MariaDB's socket", () => {
  it('is in its directory when the path fits a unix socket address', () => {
    expect(embeddedSocketPath('/srv/berth/.data/mariadb')).toBe('/srv/berth/.data/mariadb/mysqld.sock');
  });

  it('is elsewhere when the path is too long, but at the same place on every start', () => {
    const dir = `/srv/${'a-long-directory-name/'.repeat(5)}mariadb`;
    const socket = embeddedSocketPath(dir);
    expect(socket.length).toBeLessThanOrEqual(100);
    expect(path.dirname(path.dirname(socket))).toBe(os.tmpdir());
    expect(embeddedSocketPath(dir)).toBe(socket);
    expect(embeddedSocketPath(`${dir}-other`)).not.toBe(socket);
  });
});
