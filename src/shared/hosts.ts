import { z } from 'zod';

/**
 * Where an SSH client is to connect: a host name (RFC 1123 labels) or an IPv4/IPv6 literal,
 * nothing else. Hosts berth hands out reach OpenSSH on users' machines, where a value
 * starting with `-` would be read as an option (`-oProxyCommand=…` runs a command).
 */
export const sshHost = z.union([z.ipv4(), z.ipv6(), z.hostname()], { error: 'must be a host name (RFC 1123) or an IPv4/IPv6 address' });
