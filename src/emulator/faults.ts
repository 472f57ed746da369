import { randomUUID } from "node:crypto";
import { z } from "zod";

/** What a request is, for matching faults and for the request log. */
export type RequestKind = "token" | "discovery" | "sendMail" | "other";

const common = {
  /** Request kind to match; `any` (default) matches token, discovery and sendMail requests. */
  kind: z.enum(["token", "discovery", "sendMail", "any"]).default("any"),
  /** Mailbox address, alias or object id (sendMail only). */
  mailbox: z.string().min(1).optional(),
  /** Tenant id or verified domain. */
  tenant: z.string().min(1).optional(),
  /** App (client) id: from the form for token requests, from the bearer token for sendMail. */
  clientId: z.string().min(1).optional(),
  /** How many matching requests the fault applies to; absent = until cleared. */
  times: z.number().int().positive().optional(),
};

/**
 * A fault to inject, discriminated by `action`:
 * - `respond`: answer `status` with `body` (JSON if an object), or a catalogued Graph refusal named by
 *   `graphError` (its documented status, code and text) / `headers` / `retryAfter`: a number
 *   is seconds written as given, decimals included (Graph sends `Retry-After: 2.128`,
 *   https://learn.microsoft.com/en-us/graph/throttling); a string is sent verbatim (an HTTP-date).
 * - `reset`: destroy the connection, `beforeBody` (nothing read) or `afterBody` (default).
 * - `hang`: never answer; the connection is held until the client gives up or the emulator closes.
 * - `acceptThen504`: process the request normally (a sendMail IS stored), then answer `status`
 *   (default 504; 500 and 502 alike, with Graph's body for that status) instead of the real
 *   answer: the ambiguous "did it send?" case.
 * - `latency`: delay matching requests by `fixedMs` plus a uniform random `[0, jitterMs)`; adds to the global latency.
 */
export const faultSchema = z.discriminatedUnion("action", [
  z
    .strictObject({
      ...common,
      action: z.literal("respond"),
      /** Optional with `graphError` (which brings its documented status). */
      status: z.number().int().min(100).max(599).optional(),
      /** A catalogued Graph refusal by name (`graphErrors` in graph.ts, e.g. `sendAsDenied`), sent with its documented status and text. */
      graphError: z.string().min(1).optional(),
      body: z.unknown().optional(),
      headers: z.record(z.string(), z.string()).optional(),
      retryAfter: z.union([z.number().min(0), z.string().min(1)]).optional(),
    })
    .refine((f) => f.status !== undefined || f.graphError !== undefined, { message: "respond needs `status` or `graphError`", path: ["status"] }),
  z.strictObject({ ...common, action: z.literal("reset"), when: z.enum(["beforeBody", "afterBody"]).default("afterBody") }),
  z.strictObject({ ...common, action: z.literal("hang") }),
  z.strictObject({
    ...common,
    action: z.literal("acceptThen504"),
    status: z.number().int().min(100).max(599).default(504),
    body: z.unknown().optional(),
  }),
  z.strictObject({ ...common, action: z.literal("latency"), fixedMs: z.number().min(0).default(0), jitterMs: z.number().min(0).default(0) }),
]);

/** Fault as given by a test or the control API. */
export type FaultInput = z.input<typeof faultSchema>;
/** Fault with defaults applied. */
export type FaultSpec = z.output<typeof faultSchema>;

/** A registered fault as listed by the control API. */
export interface FaultInfo {
  id: string;
  spec: FaultSpec;
  /** Requests it still applies to; null = until cleared. */
  remaining: number | null;
  hits: number;
}

/** Returned by `inject`: lets the test see usage and remove the fault. */
export interface FaultHandle {
  readonly id: string;
  /** How many requests the fault has applied to so far. */
  readonly hits: number;
  readonly remaining: number | null;
  clear(): void;
}

/** What is known about a request when faults are matched. */
export interface FaultContext {
  kind: RequestKind;
  /** Lowercased names the request's tenant goes by (id, domains, path segment). */
  tenantKeys: readonly string[];
  /** Lowercased names of the addressed mailbox (address, aliases, id, path segment). */
  mailboxKeys: readonly string[];
  clientId?: string;
}

interface ActiveFault extends FaultInfo {
  remainingCount: number;
}

/** Active faults, matched first-registered-first; every match consumes one of its `times`. */
export class FaultRegistry {
  private faults: ActiveFault[] = [];

  add(input: FaultInput): FaultHandle {
    const spec = faultSchema.parse(input);
    const fault: ActiveFault = { id: randomUUID(), spec, remaining: spec.times ?? null, remainingCount: spec.times ?? Infinity, hits: 0 };
    this.faults.push(fault);
    const remove = () => this.remove(fault.id);
    return {
      id: fault.id,
      get hits() {
        return fault.hits;
      },
      get remaining() {
        return fault.remaining;
      },
      clear: remove,
    };
  }

  remove(id: string): boolean {
    const before = this.faults.length;
    this.faults = this.faults.filter((f) => f.id !== id);
    return this.faults.length !== before;
  }

  clear(): void {
    this.faults = [];
  }

  list(): FaultInfo[] {
    return this.faults.map(({ id, spec, remaining, hits }) => ({ id, spec, remaining, hits }));
  }

  get size(): number {
    return this.faults.length;
  }

  /**
   * First answering fault (anything but `latency`) that matches. Before the body is read only
   * `reset` with `when: beforeBody` is considered, and only on what the URL and headers tell.
   */
  takeAction(ctx: FaultContext, phase: "beforeBody" | "afterBody"): FaultInfo | undefined {
    for (const f of this.faults) {
      if (f.spec.action === "latency") continue;
      const early = f.spec.action === "reset" && f.spec.when === "beforeBody";
      if (early !== (phase === "beforeBody")) continue;
      if (this.matches(f.spec, ctx)) return this.consume(f);
    }
    return undefined;
  }

  /** Sum of all matching `latency` faults' delays (each match consumes one of its `times`). */
  takeLatency(ctx: FaultContext): number {
    let ms = 0;
    for (const f of this.faults) {
      if (f.spec.action !== "latency" || !this.matches(f.spec, ctx)) continue;
      ms += f.spec.fixedMs + Math.random() * f.spec.jitterMs;
      this.consume(f);
    }
    return ms;
  }

  private matches(spec: FaultSpec, ctx: FaultContext): boolean {
    if (ctx.kind === "other") return false;
    if (spec.kind !== "any" && spec.kind !== ctx.kind) return false;
    if (spec.mailbox !== undefined && !ctx.mailboxKeys.includes(spec.mailbox.toLowerCase())) return false;
    if (spec.tenant !== undefined && !ctx.tenantKeys.includes(spec.tenant.toLowerCase())) return false;
    if (spec.clientId !== undefined && ctx.clientId?.toLowerCase() !== spec.clientId.toLowerCase()) return false;
    return true;
  }

  private consume(f: ActiveFault): FaultInfo {
    f.hits++;
    f.remainingCount--;
    if (f.remaining !== null) f.remaining = f.remainingCount;
    if (f.remainingCount <= 0) this.remove(f.id);
    return { id: f.id, spec: f.spec, remaining: f.remaining, hits: f.hits };
  }
}
