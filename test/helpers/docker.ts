/**
 * A base image that exists on no engine and can be pulled from nowhere: its registry is
 * under `.invalid` (RFC 6761), a name that never resolves, with or without a network.
 */
export const ABSENT_BASE = 'registry.invalid/berth-test/absent:never';
