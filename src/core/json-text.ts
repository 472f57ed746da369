import { formatFieldPath } from "./field-path.js";

/*
 * JSON text checked before JSON.parse builds it: the request bodies of the HTTP door and the
 * JSON form of the config file share the rules below (shape limits, one key per object, no
 * prototype-poisoning keys).
 */

/**
 * What a reader accepts in JSON text's shape, checked while it scans the text and before
 * JSON.parse builds a single object: an absurd body (600,000 members, 100,000 levels) is
 * refused in microseconds and never reaches validation, the fingerprint or anything recursive.
 */
export interface JsonShapeLimits {
  /** Deepest nesting of objects and arrays; the body itself is level 1. */
  readonly maxDepth: number;
  /** Most members in one object. */
  readonly maxMembers: number;
  /** Most items in one array. */
  readonly maxItems: number;
}

/** Limits for a route that names none. */
export const DEFAULT_JSON_SHAPE: JsonShapeLimits = Object.freeze({ maxDepth: 64, maxMembers: 1000, maxItems: 10_000 });

/**
 * JSON text refused for its shape (`limit`: too deep, too many members or items) or for one of its
 * keys (`key`: repeated in one object, or a prototype-poisoning key), with the field it is about.
 * A SyntaxError, as JSON.parse's own refusals are.
 */
export class JsonTextError extends SyntaxError {
  constructor(
    readonly kind: "limit" | "key",
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = "JsonTextError";
  }
}

/** One open object (with the keys seen so far) or array while scanning. */
interface Frame {
  /** The keys of an object; undefined for an array. */
  readonly keys: Set<string> | undefined;
  /** Members of an object so far; commas so far for an array (the index of its current item). */
  count: number;
  /** An object's current key. */
  key: string;
  /** This object is the value of a "constructor" member (so "prototype" in it is refused). */
  readonly inConstructor: boolean;
}

/** The index of the quote that closes the string opening at `open`, or -1. */
function stringEnd(text: string, open: number): number {
  let at = text.indexOf('"', open + 1);
  while (at !== -1) {
    // A quote is escaped when an odd number of backslashes precede it.
    let slashes = 0;
    while (text.charCodeAt(at - 1 - slashes) === 0x5c) slashes++;
    if (slashes % 2 === 0) return at;
    at = text.indexOf('"', at + 1);
  }
  return -1;
}

function pathTo(stack: readonly Frame[], frames: number): string {
  const segments: (string | number)[] = [];
  for (let i = 0; i < frames; i++) {
    const f = stack[i]!;
    segments.push(f.keys === undefined ? f.count : f.key);
  }
  return formatFieldPath(segments);
}

/**
 * One pass over JSON text without building values: throws a JsonTextError (`limit`) as soon as
 * the text nests deeper, or holds an object or array larger, than `limits`; returns the first
 * repeated or prototype-poisoning key (`key`), which the caller reports only when the text
 * turns out to be valid JSON. Strings are skipped with indexOf, so a body of base64 attachments
 * costs a few structural characters, not a loop over every byte. Malformed text ends the scan
 * quietly: JSON.parse says what is wrong with it.
 */
export function scanJsonText(text: string, limits: JsonShapeLimits = DEFAULT_JSON_SHAPE): JsonTextError | undefined {
  const stack: Frame[] = [];
  let top: Frame | undefined;
  let expectKey = false;
  let found: JsonTextError | undefined;
  // A loop over char codes, not a regex: no match object per token (5–10 times faster on bodies of many short keys).
  for (let at = 0, n = text.length; at < n; at++) {
    const c = text.charCodeAt(at);
    if (c === 0x22 /* " */) {
      const end = stringEnd(text, at);
      if (end === -1) return found;
      const open = at;
      at = end;
      if (!expectKey || top?.keys === undefined) continue;
      expectKey = false;
      let key = text.slice(open + 1, end);
      if (key.includes("\\")) {
        try {
          key = JSON.parse(text.slice(open, end + 1)) as string;
        } catch {
          return found;
        }
      }
      if (++top.count > limits.maxMembers) {
        throw new JsonTextError("limit", pathTo(stack, stack.length - 1), `has more than ${limits.maxMembers} members (the most this service reads in one object)`);
      }
      top.key = key;
      if (found === undefined) {
        if (top.keys.has(key)) found = new JsonTextError("key", pathTo(stack, stack.length), "duplicate key: each key may appear once in an object");
        else if (key === "__proto__" || (key === "prototype" && top.inConstructor)) {
          found = new JsonTextError("key", pathTo(stack, stack.length), `"${key}" is not accepted as a key here (prototype pollution)`);
        }
      }
      top.keys.add(key);
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= limits.maxDepth) {
        throw new JsonTextError("limit", pathTo(stack, stack.length), `nests deeper than ${limits.maxDepth} levels (the most this service reads)`);
      }
      const inConstructor = top?.keys !== undefined && top.key === "constructor";
      top = { keys: c === 0x7b ? new Set() : undefined, count: 0, key: "", inConstructor };
      stack.push(top);
      expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      top = stack[stack.length - 1];
      expectKey = false;
    } else if (c === 0x2c /* , */ && top !== undefined) {
      // The next string of an object is a key; an array has one more item.
      if (top.keys !== undefined) expectKey = true;
      else if (++top.count >= limits.maxItems) {
        throw new JsonTextError("limit", pathTo(stack, stack.length - 1), `has more than ${limits.maxItems} items (the most this service reads in one list)`);
      }
    }
  }
  return found;
}

/**
 * JSON.parse with a leading byte-order mark ignored, after a scan of the text (scanJsonText):
 * text beyond `limits` is refused before it is parsed; a key repeated within one object
 * (JSON.parse would silently keep the last) and prototype-poisoning keys (`__proto__`, or
 * `prototype` inside a `constructor` member: the rules of secure-json-parse) are refused when
 * the text is otherwise valid JSON. Every refusal is a SyntaxError; a JsonTextError names the field.
 */
export function parseJsonText(text: string, limits: JsonShapeLimits = DEFAULT_JSON_SHAPE): unknown {
  const json = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const keyProblem = scanJsonText(json, limits);
  const value: unknown = JSON.parse(json);
  if (keyProblem !== undefined) throw keyProblem;
  return value;
}

