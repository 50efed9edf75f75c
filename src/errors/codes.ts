// Every error code a client of berth can see, with the HTTP status and title it is
// answered with (RFC 9457 problem documents: `type` …/problems/<code>, `title`, `status`,
// `detail`, `code`). Domain code raises `AppError(code, …)` from ./app-error.ts; the
// problem plugin renders it from this table. A new code starts here.

interface CodeInfo {
  status: number;
  /** What the code means, for the documentation and generated clients. */
  description: string;
}

export const ERROR_CODES = {
  // The request itself
  validation_failed: { status: 400, description: 'the request does not match the schema; `errors` lists each problem with a JSON pointer' },
  malformed_body: { status: 400, description: 'the body is not valid JSON, or broke off' },
  bad_request: { status: 400, description: 'the request is malformed in another way' },
  bad_url: { status: 400, description: 'the URL does not decode' },
  invalid_cursor: { status: 400, description: 'the cursor is not one this server issued' },
  invalid_yaml: { status: 400, description: 'the YAML document does not parse' },
  yaml_too_complex: { status: 400, description: 'the YAML document is beyond what an import may be (nodes, aliases, time)' },
  invalid_host_key: { status: 400, description: 'host_key is neither an OpenSSH public key line nor a SHA256 fingerprint' },
  invalid_build_context: { status: 400, description: 'the upload is not a tar archive with a Dockerfile at its root' },
  name_required: { status: 400, description: 'a tar build context needs ?name=' },
  dockerfile_not_allowed: {
    status: 400,
    description: 'the Dockerfile would reach the network (ADD of a URL or git source, --network) or uses a form berth does not check (here-documents, variables in ADD, unknown instructions)',
  },
  missing_credentials: { status: 400, description: 'POST /v1/token without a JSON body or HTTP Basic credentials' },
  malformed_credentials: { status: 400, description: 'HTTP Basic credentials that are not base64("username:password")' },
  missing_refresh_token: { status: 400, description: 'no refresh token in the body or the Authorization header' },
  request_timeout: { status: 408, description: 'the request did not arrive within BERTH_REQUEST_TIMEOUT_SECONDS' },
  payload_too_large: { status: 413, description: 'the body is larger than this route takes' },
  uri_too_long: { status: 414, description: 'a path parameter is longer than any berth accepts' },
  unsupported_media_type: { status: 415, description: 'the body has a Content-Type this route does not take' },
  route_not_found: { status: 404, description: 'no route has this method and path' },

  // Who is asking
  missing_token: { status: 401, description: 'no access token: send Authorization: Bearer <token>' },
  invalid_token: { status: 401, description: 'the access token is malformed, forged, from another issuer, or a refresh token' },
  token_expired: { status: 401, description: 'the access token has expired; refresh it' },
  session_revoked: { status: 401, description: 'the session of this token has ended (logged out, revoked, expired, user disabled)' },
  invalid_credentials: { status: 401, description: 'username or password is wrong (the same answer for an unknown user)' },
  invalid_refresh_token: { status: 401, description: 'the refresh token is unknown, expired or revoked' },
  refresh_token_reused: { status: 401, description: 'a spent refresh token was presented again: its session has been revoked' },
  account_disabled: { status: 403, description: 'this account is disabled' },
  admin_required: { status: 403, description: 'the action needs the admin role' },
  forbidden: { status: 403, description: 'the caller may not act on this resource' },
  field_not_allowed: { status: 403, description: 'a user may change only their own email' },
  invalid_current_password: { status: 403, description: 'the current password is wrong' },
  registration_closed: { status: 403, description: 'BERTH_REGISTRATION is closed' },
  too_many_attempts: { status: 429, description: 'too many attempts from this address or for this account; see Retry-After' },
  rate_limited: { status: 429, description: 'too many requests; see Retry-After' },

  // Things that do not exist
  user_not_found: { status: 404, description: 'no such user' },
  session_not_found: { status: 404, description: 'no such session of yours' },
  machine_not_found: { status: 404, description: 'no machine of that name' },
  reservation_not_found: { status: 404, description: 'no such reservation of yours' },
  image_not_found: { status: 404, description: 'no such image' },
  vm_not_found: { status: 404, description: 'no such VM' },
  webhook_not_found: { status: 404, description: 'no such webhook of yours' },
  webhook_delivery_not_found: { status: 404, description: 'no such delivery of this webhook' },

  // The state of things
  username_taken: { status: 409, description: 'a user of that name exists' },
  cannot_delete_self: { status: 409, description: 'an admin cannot delete their own account' },
  last_admin: { status: 409, description: 'the change would leave no enabled admin' },
  password_changed: { status: 409, description: 'the password changed meanwhile; try again' },
  machine_exists: { status: 409, description: 'a machine of that name exists' },
  machine_reserved: { status: 409, description: 'the machine is held by a reservation (or still holds a leftover account)' },
  machine_is_vm: { status: 409, description: "the machine is a VM berth runs: manage it through /v1/vms" },
  not_in_maintenance: { status: 409, description: 'the machine is not in maintenance' },
  not_awaiting_reprovision: { status: 409, description: 'the machine is not in needs_reprovision' },
  insufficient_capacity: {
    status: 409,
    description: 'not enough matching machines are free for the window; `available` says how many are free now, `earliest_start` when the request could start (null: not within the booking horizon)',
  },
  booking_conflict: { status: 409, description: 'the extension would run into a booking of one of the machines; `latest_end` is as far as it may go' },
  machine_booked: { status: 409, description: 'the machine is booked ahead (`bookings`); repeat with ?force=true to re-plan or fail those bookings' },
  reservation_not_active: { status: 409, description: 'only an active reservation can be extended' },
  reservation_expired: { status: 409, description: 'the reservation has run out and is being released' },
  reservation_provisioning: { status: 409, description: 'the reservation is still being set up' },
  reservation_changed: { status: 409, description: 'the reservation changed meanwhile; try again' },
  request_in_progress: { status: 409, description: 'the request with this Idempotency-Key is still being processed' },
  image_exists: { status: 409, description: 'an image of that name exists' },
  image_building: { status: 409, description: 'the image is still being built' },
  image_in_use: { status: 409, description: 'VMs use this image' },
  image_not_ready: { status: 409, description: 'the image is not ready (building, failed, or deleted meanwhile)' },
  vm_exists: { status: 409, description: 'a machine or VM of that name exists' },
  vm_state: { status: 409, description: 'the VM is in a state that does not allow this' },
  vm_reserved: { status: 409, description: 'the VM is reserved; release its reservation first' },
  vm_on_other_host: { status: 409, description: "the VM runs on another host; ask a berth process there" },
  pool_reserved: { status: 409, description: 'the pool cannot shrink below its reserved VMs' },
  webhook_disabled: { status: 409, description: 'the webhook is disabled (its endpoint answered 410 Gone): nothing is sent to it; create a new one' },
  delivery_in_progress: { status: 409, description: 'the delivery is being sent right now; read its attempts in a moment' },

  // Policies
  account_name_reserved: { status: 422, description: 'the Unix account name is a system name' },
  exceeds_max_duration: { status: 422, description: 'past the reservation policy cap; `max_expires_at` when extending' },
  exceeds_max_wait: { status: 422, description: 'wait_minutes beyond BERTH_QUEUE_MAX_WAIT_MINUTES (`max_wait_minutes`)' },
  start_in_past: { status: 422, description: 'start_at is not in the future' },
  beyond_booking_horizon: { status: 422, description: 'start_at beyond BERTH_BOOKING_HORIZON_DAYS (`latest_start`)' },
  machine_limit_exceeded: { status: 422, description: 'the user would hold more machines than BERTH_RESERVATION_MAX_MACHINES_PER_USER' },
  idempotency_key_reused: { status: 422, description: 'this Idempotency-Key was used with a different request' },
  password_rejected: { status: 422, description: 'the password is not acceptable (e.g. the username)' },
  vm_limits_exceeded: { status: 422, description: 'cpus or memory_mb beyond this host’s limits' },
  webhook_limit_exceeded: { status: 422, description: 'the user has as many webhooks as berth allows; delete one first' },
  webhook_url_refused: {
    status: 422,
    description: "the URL's host does not resolve, or is an address webhooks may not reach (loopback, private, link-local, this host's own …) unless BERTH_WEBHOOK_ALLOW_HOSTS lets it through",
  },

  // berth's side
  internal_error: { status: 500, description: 'an unexpected error; it has been logged' },
  provisioning_failed: { status: 502, description: 'a machine could not be set up; everything was undone; `machine` names it' },
  database_unavailable: { status: 503, description: 'the database does not answer; see Retry-After' },
  vm_unavailable: { status: 503, description: 'VMs cannot boot on this host (no QEMU, no kernel)' },
  vm_ports_exhausted: { status: 503, description: 'every port of BERTH_VM_PORTS is taken on this host' },
} as const satisfies Record<string, CodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The standard title of each status berth answers with. */
export const STATUS_TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};
