/*
 * Quoting for generated PowerShell. Every value the generator puts into a script goes
 * through psQuote: a single-quoted (verbatim) literal, where PowerShell expands nothing
 * ($, backtick, $( ), ; are plain characters). The only special characters inside one are
 * the quote characters themselves, and PowerShell accepts four of them as a single quote:
 * ' U+2018 U+2019 U+201A U+201B — each is escaped by doubling it. Line breaks and other
 * control characters are refused: a literal may span lines, but a value that does is a
 * value someone crafted, and it would break the line comments around it.
 */

/** Characters PowerShell's tokenizer treats as a single quote. */
const PS_SINGLE_QUOTES = /['\u2018\u2019\u201A\u201B]/g;
// C0, DEL, C1 (incl. NEL U+0085), and the Unicode line/paragraph separators.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
// eslint-disable-next-line no-control-regex
const CONTROL_ALL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** A value that cannot be put into a script safely. */
export class UnsafeScriptValueError extends Error {
  constructor(what: string) {
    super(`${what} contains a line break or control character; refusing to put it into a PowerShell script`);
    this.name = "UnsafeScriptValueError";
  }
}

/** `O'Brien` → `'O''Brien'`. Throws UnsafeScriptValueError on control characters. */
export function psQuote(value: string, what = "value"): string {
  if (CONTROL.test(value)) throw new UnsafeScriptValueError(what);
  return `'${value.replace(PS_SINGLE_QUOTES, (q) => q + q)}'`;
}

/**
 * A value for an OPATH filter (Exchange recipient filters): a single-quoted string with `'`
 * doubled. The result is then a plain string, to be put into the script with psQuote, so
 * the two levels of quoting never mix.
 */
export function opathQuote(value: string, what = "value"): string {
  if (CONTROL.test(value)) throw new UnsafeScriptValueError(what);
  if (/[\u2018\u2019\u201A\u201B]/.test(value)) throw new UnsafeScriptValueError(`${what} (typographic quote)`);
  return `'${value.replace(/'/g, "''")}'`;
}

/** For free text (display names): control characters become spaces, runs of space collapse, length is capped. */
export function sanitizeLabel(value: string, max = 64): string {
  return value.replace(CONTROL_ALL, " ").replace(/\s+/g, " ").trim().slice(0, max).trim();
}
