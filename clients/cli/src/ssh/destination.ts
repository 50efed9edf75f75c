// The host and port berth's answer names, checked before they reach OpenSSH: a host is a
// host name (RFC 1123 labels) or an IP literal, a port a number. The server checks the same
// when a machine is registered; the CLI checks again because a value starting with `-` (from
// a compromised or impostor server) would reach ssh or ssh-keyscan as an option
// (`-oProxyCommand=…` runs a command here). OpenSSH also gets `--` before the host.
import net from 'node:net';
import { CliError } from '../errors.js';

/** RFC 1123 labels of letters, digits and inner hyphens, at most 253 characters (a final dot allowed). */
const HOST_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** A host name or an IPv4/IPv6 literal (without a zone: nothing after `%`). */
export function isSshHost(host: unknown): host is string {
  return typeof host === 'string' && (HOST_NAME.test(host) || net.isIPv4(host) || (net.isIPv6(host) && !host.includes('%')));
}

/** The machine as berth named it, refused unless its host and port are what ssh should get. */
export function checkedEndpoint<T extends { name: string; host: unknown; port: unknown }>(machine: T): T & { host: string; port: number } {
  if (!isSshHost(machine.host)) {
    throw new CliError(`berth named ${JSON.stringify(machine.host)} as the host of ${machine.name}, which is not a host name or an IP address: refusing to run ssh`);
  }
  const port = machine.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CliError(`berth named ${JSON.stringify(port)} as the SSH port of ${machine.name}, which is not a port number: refusing to run ssh`);
  }
  return machine as T & { host: string; port: number };
}
