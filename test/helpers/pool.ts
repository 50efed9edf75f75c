// A berth app with a pool of real SSH machines registered in it.
import { parseHostKey } from '../../src/infra/ssh.js';
import { adminSession, createTestApp, type Session, type TestApp } from './app.js';
import { rootKey, startMachines, type TestMachine } from './ssh-machines.js';

export interface Pool {
  t: TestApp;
  admin: Session;
  machines: TestMachine[];
  /** Registers a test machine in berth (key auth, host key pinned). */
  register(m: TestMachine, extra?: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
}

export async function createPool(size: number, env: Record<string, string> = {}, prefix = 'p'): Promise<Pool> {
  const [t, machines] = await Promise.all([createTestApp(env), startMachines(size, prefix)]);
  const admin = await adminSession(t);
  const register = async (m: TestMachine, extra: Record<string, unknown> = {}) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/machines',
      headers: admin.auth,
      payload: { name: m.name, host: m.host, port: m.port, username: 'root', private_key: rootKey.private, host_key: m.hostKey, ...extra },
    });
    if (res.statusCode !== 201) throw new Error(`register ${m.name}: ${res.statusCode} ${res.body}`);
    if (parseHostKey(m.hostKey) === null) throw new Error(`unparseable host key of ${m.name}`);
  };
  for (const m of machines) await register(m);
  return {
    t,
    admin,
    machines,
    register,
    async close() {
      await t.close();
      await Promise.all(machines.map((m) => m.stop()));
    },
  };
}

/** Whether a Unix account exists on a machine, asked inside the machine. */
export async function accountExists(m: TestMachine, username: string): Promise<boolean> {
  return (await m.sh(`getent passwd ${username}`)).code === 0;
}
