import { randomUUID } from "node:crypto";
import { createServer, IncomingMessage, ServerResponse, type RequestListener, type Server } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { HttpLimitsConfig } from "../config/schema.js";
import { RelayError } from "../core/problems.js";
import { PROBLEM_CONTENT_TYPE, toProblemResponse } from "./problem-response.js";

/**
 * The HTTP listener under the express app: Node's server with the limits a service facing many
 * callers needs, and Node's own refusals answered as problem+json like every other refusal.
 *
 * - Headers must arrive within `headersTimeoutSeconds`, the whole request within
 *   `requestTimeoutSeconds` (the body reader of POST /send enforces it and answers 408 through
 *   the app; Node's own timer a little later is the backstop). Slow clients get 408 and the
 *   connection closes.
 * - At most `maxConnections` open connections, and `maxConnectionsPerClient` per client address;
 *   one over the cap gets a 503 problem and is closed before a request is read.
 * - `Expect: 100-continue` gets its 100 only when `mayContinue(request)` says so (POST /send
 *   with a known API key): a body is never invited for a request that will be refused. Other
 *   expectations get 417.
 * - Malformed HTTP (bad request line, oversized headers) never reaches a route; it is answered
 *   here, by hand, and the connection closed.
 */

export interface ListenerOptions {
  readonly limits: HttpLimitsConfig;
  /** Whether a request that sent `Expect: 100-continue` may be told to send its body. */
  readonly mayContinue: (request: IncomingMessage) => boolean;
  /** Called for each connection refused over a cap (metrics, logs). */
  readonly onRefusedConnection?: (reason: "total" | "per_client") => void;
  /**
   * The prototypes the handler gives every request and response (an express app's `request` and
   * `response`): the server makes them with these prototypes from the start. See bornWith.
   */
  readonly prototypes?: { readonly request: object; readonly response: object };
}

/** Seconds Node's own request timer waits beyond the app's, so the app's 408 comes first. */
const NODE_TIMER_GRACE_SECONDS = 2;

export function createListener(handler: RequestListener, options: ListenerOptions): Server {
  const { limits } = options;
  const server = createServer(
    {
      keepAliveTimeout: limits.keepAliveTimeoutSeconds * 1000,
      headersTimeout: limits.headersTimeoutSeconds * 1000,
      requestTimeout: (limits.requestTimeoutSeconds + NODE_TIMER_GRACE_SECONDS) * 1000,
      // How often Node checks the two timers above (default 30 s would let a slow client linger).
      connectionsCheckingInterval: 500,
      // A missing Host header is refused by the app, as problem+json (Node's own 400 has no body).
      requireHostHeader: false,
      ...(options.prototypes !== undefined ? bornWith(options.prototypes) : {}),
    },
    handler,
  );

  // Over the total cap, Node's own maxConnections would drop the socket without a word: answer first.
  const perClient = new Map<string, number>();
  let open = 0;
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress ?? "unknown";
    const fromClient = (perClient.get(address) ?? 0) + 1;
    open += 1;
    perClient.set(address, fromClient);
    socket.once("close", () => {
      open -= 1;
      const left = (perClient.get(address) ?? 1) - 1;
      if (left <= 0) perClient.delete(address);
      else perClient.set(address, left);
    });
    const overTotal = open > limits.maxConnections;
    const overClient = limits.maxConnectionsPerClient > 0 && fromClient > limits.maxConnectionsPerClient;
    if (!overTotal && !overClient) return;
    options.onRefusedConnection?.(overTotal ? "total" : "per_client");
    writeRawProblem(
      socket,
      503,
      "Service Unavailable",
      new RelayError(
        "upstream_unavailable",
        overTotal ? "this instance has too many open connections; retry" : "too many open connections from your address; reuse connections or retry",
        { retryAfterSeconds: 1 },
      ),
    );
  });

  server.on("checkContinue", (request: IncomingMessage, response: ServerResponse) => {
    if (options.mayContinue(request)) response.writeContinue();
    handler(request, response);
  });

  server.on("checkExpectation", (request: IncomingMessage, response: ServerResponse) => {
    const requestId = randomUUID();
    const problem = toProblemResponse(new RelayError("expectation_failed", `Expect: ${String(request.headers.expect).slice(0, 100)} is not supported; send the request without it`), requestId);
    const body = JSON.stringify(problem.body);
    response.writeHead(417, { "content-type": PROBLEM_CONTENT_TYPE, "content-length": Buffer.byteLength(body), "x-request-id": requestId, connection: "close" });
    response.end(body);
  });

  server.on("clientError", answerClientError);
  return server;
}

/**
 * Request and response classes whose instances have the given prototypes from birth.
 *
 * express's app.handle gives every request and response its own prototypes
 * (`Object.setPrototypeOf(req, app.request)`), a no-op when the object already has that
 * prototype. Changing the prototype of a live object is not: measured on a bare node:http server
 * under 64 connections, it took the cost per request from 23 to 70 µs and made a fifth of
 * everything a request allocates survive V8's young-generation collections (0.02 → 2.1 MB per
 * scavenge), to be promoted and collected later by full GCs. In the whole service (BENCHMARKS.md)
 * it was a fifth of the CPU per send and a third of what survived each scavenge. Born with
 * express's prototypes, the same objects die young. They are still IncomingMessage and
 * ServerResponse instances (constructed by Node's own constructors, `instanceof` holds); express
 * and Node see no difference.
 */
function bornWith(prototypes: { readonly request: object; readonly response: object }): { IncomingMessage: typeof IncomingMessage; ServerResponse: typeof ServerResponse } {
  // Node's http classes are ES5 constructors, callable on an object made by `new` of another function.
  const Request = function (this: IncomingMessage, socket: Socket): void {
    Reflect.apply(IncomingMessage, this, [socket]);
  };
  const Response = function (this: ServerResponse, req: IncomingMessage, options?: unknown): void {
    Reflect.apply(ServerResponse, this, [req, options]);
  };
  Request.prototype = prototypes.request;
  Response.prototype = prototypes.response;
  return { IncomingMessage: Request as unknown as typeof IncomingMessage, ServerResponse: Response as unknown as typeof ServerResponse };
}

/*
 * A request Node refused before any route saw it. The answer is written by hand on the socket:
 * a 408 for a request that did not arrive in time, a 400 for anything malformed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    writeRawProblem(socket, 408, "Request Timeout", new RelayError("request_timeout", "the request was not received in time; send it again, faster"));
    return;
  }
  const detail = err.code === "HPE_HEADER_OVERFLOW" ? "the request headers are too large" : "the request is not valid HTTP";
  writeRawProblem(socket, 400, "Bad Request", new RelayError("validation_failed", detail, { errors: [{ path: "(request)", message: detail }] }));
}

/** A problem answer written straight to the socket (no request to answer through), then the socket closed. */
function writeRawProblem(socket: Duplex, status: number, reason: string, err: RelayError): void {
  // Even a request the parser refused gets its id, so the answer matches the spec and the problem's requestId.
  const requestId = randomUUID();
  const problem = toProblemResponse(err, requestId);
  const body = JSON.stringify(problem.body);
  const retryAfter = problem.retryAfterSeconds !== undefined ? `Retry-After: ${problem.retryAfterSeconds}\r\n` : "";
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\n${retryAfter}Connection: close\r\n\r\n${body}`,
  );
}
