import type { Caller, CallerDirectory } from "../tenants/caller-directory.js";
import { RelayError } from "../core/problems.js";

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

/** The `WWW-Authenticate` challenge every 401 carries. */
export const BEARER_CHALLENGE = 'Bearer realm="noreply-relay"';

/**
 * The caller whose API key is in `Authorization: Bearer <key>`. Throws 401 `unauthorized` when
 * the header is missing, malformed or names an unknown key; the key itself is never echoed.
 */
export function authenticateCaller(authorization: string | undefined, callers: CallerDirectory): Caller {
  const match = BEARER.exec(authorization ?? "");
  const caller = match ? callers.authenticate(match[1]!) : undefined;
  if (caller === undefined) throw new RelayError("unauthorized", match ? "the API key is not known" : "send the API key as Authorization: Bearer <key>");
  return caller;
}
