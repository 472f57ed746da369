import type { Server } from "node:http";
import type { Express } from "express";
import request from "supertest";
import { requestIdMismatch, specValidator } from "./checked-fetch.js";

/*
 * supertest for the app in this process: every answer is checked against openapi.yaml (status,
 * headers, body) before the test sees it, as checkedFetch does for answers over the network. A
 * test of deliberately off-spec behaviour passes `offSpec: "<why>"`.
 *
 *   const res = await checkedRequest(app.server).post("/send", { headers, body });
 */

export interface CheckedOptions {
  readonly headers?: Readonly<Record<string, string>>;
  /** JSON value (sent as JSON) or raw text (sent as it is, with the headers given). */
  readonly body?: unknown;
  /** Why this answer may differ from openapi.yaml; it is then not checked. */
  readonly offSpec?: string;
}

/** An answer as the tests read it. */
export interface CheckedResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** Parsed JSON body, when the body is JSON. */
  readonly json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test assertions read arbitrary members
}

export interface CheckedClient {
  get(path: string, options?: CheckedOptions): Promise<CheckedResponse>;
  post(path: string, options?: CheckedOptions): Promise<CheckedResponse>;
  /** Any method (HEAD, PUT, DELETE …). */
  call(method: string, path: string, options?: CheckedOptions): Promise<CheckedResponse>;
}

/** A supertest client on `target` (the app's server or express app) that checks every answer. */
export function checkedRequest(target: Server | Express): CheckedClient {
  const call = async (method: string, path: string, options: CheckedOptions = {}): Promise<CheckedResponse> => {
    if (options.offSpec !== undefined && options.offSpec.trim() === "") throw new Error("checkedRequest: offSpec needs a reason");
    const agent = request(target);
    // supertest offers every method Node knows by its lower-case name.
    const start = (agent as unknown as Record<string, ((path: string) => request.Test) | undefined>)[method.toLowerCase()];
    if (typeof start !== "function") throw new Error(`checkedRequest: no method ${method}`);
    let test = start.call(agent, path);
    for (const [name, value] of Object.entries(options.headers ?? {})) test = test.set(name, value);
    if (options.body !== undefined) test = test.send(typeof options.body === "string" ? options.body : JSON.stringify(options.body));
    // Every body as text, whatever its media type.
    const res = await test.buffer(true).parse((stream, done) => {
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => (text += chunk));
      stream.on("end", () => done(null, text));
    });
    const text = typeof res.body === "string" ? res.body : "";
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.headers as Record<string, string | string[] | undefined>)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
    }
    if (options.offSpec === undefined) {
      const errors = specValidator().validateAnyResponse({ method: method.toUpperCase(), path, status: res.status, headers, body: text });
      errors.push(...requestIdMismatch(headers, text));
      if (errors.length > 0) {
        const excerpt = text.length > 600 ? `${text.slice(0, 600)}…` : text;
        throw new Error(`the relay's answer does not match openapi.yaml:\n  ${errors.join("\n  ")}\nbody: ${excerpt}`);
      }
    }
    let json: unknown;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers, text, json };
  };
  return {
    get: (path, options) => call("GET", path, options),
    post: (path, options) => call("POST", path, options),
    call,
  };
}
