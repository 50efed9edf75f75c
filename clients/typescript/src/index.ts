// @berth/client: typed access to the berth HTTP API.
export { createBerthClient, unwrap, type BerthClient, type BerthClientOptions, type TokenResponse, type Tokens } from './client.js';
export { BerthHttpError, BerthProblemError, isProblem, PROBLEM_CODES, type BerthProblem, type ProblemCode, type ProblemOf } from './problems.js';
export type { components, operations, paths } from './generated/schema.js';
