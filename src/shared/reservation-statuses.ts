// The reservation statuses by what they mean, defined once. The reservations module writes
// them (reservations/status.ts); the machines module reads them too (whether a machine's
// reservation still holds it), which is why they live here rather than in either module.

/** The statuses in which a reservation holds its machines. */
export const LIVE_STATUSES = ['provisioning', 'active', 'releasing'] as const;
/** The statuses a reservation ends in: it holds nothing any more. */
export const ENDED_STATUSES = ['released', 'failed'] as const;
/** The statuses a process works in under a lease, which another takes over once it has run out. */
export const LEASED_STATUSES = ['provisioning', 'releasing'] as const;

export const isLive = (status: string) => (LIVE_STATUSES as readonly string[]).includes(status);
