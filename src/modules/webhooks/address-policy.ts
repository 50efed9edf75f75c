// Which addresses a webhook may reach: "no way into the host". A webhook's URL is chosen by
// whoever creates it, and berth sends from inside the lab: only plain public unicast
// addresses are reached, never loopback, link-local, private (RFC 1918, ULA), CGNAT,
// multicast, unspecified, reserved or translation ranges, nor any address of this host's
// own interfaces — unless BERTH_WEBHOOK_ALLOW_HOSTS names a CIDR that holds it (a lab's own
// receivers, tests). An allow-list of one range (ipaddr.js's `unicast`) rather than a list
// of ranges to refuse: a range nobody thought of is refused, not let through.
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';

export interface AddressPolicy {
  /** Why `address` may not be reached (e.g. `loopback`); null when it may. */
  refusal(address: string): string | null;
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** IPv4 written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is. */
function plain(address: string): Address | null {
  if (!ipaddr.isValid(address)) return null;
  const parsed = ipaddr.parse(address);
  return parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address() : parsed;
}

/** This host's own addresses, as they are now (interfaces come and go). */
function ownAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .map((i) => i && plain(i.address.split('%')[0]!)?.toString())
    .filter((a): a is string => Boolean(a));
}

export function createAddressPolicy(allowCidrs: string[], own: () => string[] = ownAddresses): AddressPolicy {
  const allowed = allowCidrs.map((c) => ipaddr.parseCIDR(c));
  const isAllowed = (a: Address) => allowed.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits));
  return {
    refusal(address) {
      const a = plain(address.split('%')[0]!);
      if (!a) return 'not an IP address';
      if (isAllowed(a)) return null;
      const range = a.range();
      if (range !== 'unicast') return range;
      if (own().includes(a.toString())) return "this host's own address";
      return null;
    },
  };
}
