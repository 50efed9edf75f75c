// A build context as berth takes it: the directory as a tar file, without what its
// .dockerignore excludes (the Dockerfile itself is always sent, as docker does).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import dockerignoreModule from '@balena/dockerignore';
import tarFs from 'tar-fs';

// A CommonJS module whose types describe an ES default export: the factory is its `default`.
const dockerignore = dockerignoreModule.default;

export interface PackedContext {
  file: string;
  bytes: number;
  remove(): void;
}

export async function packContext(dir: string): Promise<PackedContext> {
  const ignoreFile = path.join(dir, '.dockerignore');
  const rules = dockerignore().add(fs.existsSync(ignoreFile) ? fs.readFileSync(ignoreFile, 'utf8').split(/\r?\n/) : []);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-context-'));
  const file = path.join(tmp, 'context.tar');
  const remove = () => fs.rmSync(tmp, { recursive: true, force: true });
  try {
    const pack = tarFs.pack(dir, {
      ignore: (name) => {
        const relative = path.relative(dir, name).split(path.sep).join('/');
        return relative !== 'Dockerfile' && relative !== '' && rules.ignores(relative);
      },
      // Owned by root in the image, whoever packed it here.
      map: (header) => ({ ...header, uid: 0, gid: 0, uname: 'root', gname: 'root' }),
    });
    await pipeline(pack, fs.createWriteStream(file, { mode: 0o600 }));
    return { file, bytes: fs.statSync(file).size, remove };
  } catch (err) {
    remove();
    throw err;
  }
}
