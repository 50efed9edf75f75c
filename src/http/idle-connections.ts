// BERTH_IDLE_TIMEOUT_SECONDS (Fastify's connectionTimeout) is for clients that stop: a body
// that stops arriving, an answer nobody reads, a kept-alive connection nobody uses. Node
// applies it to the socket whatever the reason it is quiet, and a request berth itself was
// still working on lost its connection before its answer: a YAML import parsed for longer
// than the timeout on a busy machine, and a reservation setting up accounts for minutes
// would have too; the client saw "other side closed" having sent everything.
//
// Node closes an idle socket only when nothing listens for the `timeout` of the response
// on it, so each response gets a listener that closes the socket only when it is the
// client's turn.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { onRequestHookHandler } from 'fastify';

/**
 * Whether an idle connection is waiting on its client: berth reads a body that does not come
 * (the parser has the stream flowing), or writes an answer the client does not take. Before
 * the body is read (the guard, the database) and after it until the answer starts, the turn
 * is berth's; BERTH_REQUEST_TIMEOUT_SECONDS still bounds how long the request may take to arrive.
 */
function waitingOnClient(request: IncomingMessage, response: ServerResponse): boolean {
  if (response.headersSent) return !response.writableFinished;
  return !request.complete && request.readableFlowing === true;
}

/** onRequest: the idle timeout ends this request's connection only while its client is the one idle. */
export const idleTimeoutForClientsOnly: onRequestHookHandler = (request, reply, done) => {
  reply.raw.on('timeout', (socket: Socket) => {
    if (waitingOnClient(request.raw, reply.raw)) socket.destroy();
  });
  done();
};
