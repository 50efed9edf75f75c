// Separate hosts on this one machine, for tests of what crosses a network: each host is a
// network namespace with its own loopback, joined to a private LAN (a bridge in a
// namespace of its own) by a veth pair. Only namespaces, links and addresses this helper
// creates are ever used, and `destroy` removes them all.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface NetHost {
  /** The namespace's name (for `ip netns exec`). */
  ns: string;
  /** Its address on the LAN. */
  address: string;
  /** argv that runs `argv` inside this host. */
  wrap(argv: string[]): string[];
  /** Runs a command inside this host. */
  exec(argv: string[]): Promise<{ stdout: string; stderr: string }>;
}

export interface Lan {
  subnet: string;
  /** A new host on the LAN: its own namespace, loopback up, one address. */
  addHost(name: string): Promise<NetHost>;
  /** Puts this process's own namespace on the LAN too (at .254), so the test itself can reach the hosts. */
  attachTest(): Promise<string>;
  destroy(): Promise<void>;
}

const ip = (...args: string[]) => run('ip', args);

/** Namespaces of this checkout's test run (the global setup removes those a killed run left). */
export const NETNS_PREFIX = `berth-${process.env.BERTH_TEST_RUN ?? 'x'}-`;

/** Removes every namespace of this checkout's runs. */
export function removeStrayNamespaces(): void {
  const names = spawnSync('ip', ['netns', 'list']).stdout?.toString().split('\n').map((l) => l.split(' ')[0]!) ?? [];
  for (const ns of names.filter((n) => n.startsWith(NETNS_PREFIX))) {
    for (const pid of spawnSync('ip', ['netns', 'pids', ns]).stdout?.toString().trim().split('\n').filter(Boolean) ?? []) spawnSync('kill', ['-KILL', pid]);
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

/**
 * A LAN `10.<octet>.0.0/24` (the octet picked at random among 100-199 unless given), whose
 * hosts get .2, .3 … in the order they are added.
 */
export async function createLan(octet = 100 + Math.floor(Math.random() * 100)): Promise<Lan> {
  const tag = randomBytes(3).toString('hex');
  const lanNs = `${NETNS_PREFIX}lan-${tag}`;
  const subnet = `10.${octet}.0`;
  const namespaces: string[] = [lanNs];
  const rootLinks: string[] = [];
  await ip('netns', 'add', lanNs);
  await ip('-n', lanNs, 'link', 'set', 'lo', 'up');
  await ip('-n', lanNs, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', lanNs, 'link', 'set', 'br0', 'up');
  let next = 2;

  return {
    subnet: `${subnet}.0/24`,
    async addHost(name) {
      const ns = `${NETNS_PREFIX}${name}-${tag}`;
      const address = `${subnet}.${next}`;
      const [inside, outside] = [`bh${next}${tag}`.slice(0, 15), `bl${next}${tag}`.slice(0, 15)];
      next++;
      await ip('netns', 'add', ns);
      namespaces.push(ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('link', 'add', inside, 'netns', ns, 'type', 'veth', 'peer', 'name', outside, 'netns', lanNs);
      await ip('-n', lanNs, 'link', 'set', outside, 'master', 'br0');
      await ip('-n', lanNs, 'link', 'set', outside, 'up');
      await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', inside);
      await ip('-n', ns, 'link', 'set', inside, 'up');
      const wrap = (argv: string[]) => ['ip', 'netns', 'exec', ns, ...argv];
      return {
        ns,
        address,
        wrap,
        exec: (argv) => run(wrap(argv)[0]!, wrap(argv).slice(1)),
      };
    },
    async attachTest() {
      const [here, there] = [`bt${tag}`.slice(0, 15), `bu${tag}`.slice(0, 15)];
      await ip('link', 'add', here, 'type', 'veth', 'peer', 'name', there, 'netns', lanNs);
      rootLinks.push(here);
      await ip('-n', lanNs, 'link', 'set', there, 'master', 'br0');
      await ip('-n', lanNs, 'link', 'set', there, 'up');
      await ip('addr', 'add', `${subnet}.254/24`, 'dev', here);
      await ip('link', 'set', here, 'up');
      return `${subnet}.254`;
    },
    async destroy() {
      for (const link of rootLinks) spawnSync('ip', ['link', 'del', link]);
      // Processes still inside would keep a namespace's network alive: end them first.
      for (const ns of namespaces) {
        const pids = spawnSync('ip', ['netns', 'pids', ns]).stdout?.toString().trim().split('\n').filter(Boolean) ?? [];
        for (const pid of pids) spawnSync('kill', ['-KILL', pid]);
      }
      for (const ns of namespaces.reverse()) spawnSync('ip', ['netns', 'del', ns]);
    },
  };
}
