/*
 * A small PowerShell lexer, enough to check generated scripts structurally where pwsh is not
 * installed: it splits a script into code, comments, single-quoted (verbatim) strings and
 * double-quoted (expanding) strings, following PowerShell's rules for the parts that matter
 * for injection: the four characters that count as a single quote, doubling as the escape
 * inside verbatim strings, backtick escapes inside expanding strings, block comments, and
 * here-strings.
 */

export type PsToken =
  | { kind: "code"; text: string }
  | { kind: "comment"; text: string }
  | { kind: "single"; raw: string; value: string }
  | { kind: "double"; raw: string }
  | { kind: "herestring"; raw: string };

const SINGLE = new Set(["'", "\u2018", "\u2019", "\u201A", "\u201B"]);
const DOUBLE = new Set(['"', "\u201C", "\u201D", "\u201E"]);

export function tokenize(script: string): PsToken[] {
  const tokens: PsToken[] = [];
  let code = "";
  const flush = () => {
    if (code) tokens.push({ kind: "code", text: code });
    code = "";
  };
  let i = 0;
  while (i < script.length) {
    const c = script[i]!;
    if (c === "<" && script[i + 1] === "#") {
      const end = script.indexOf("#>", i + 2);
      if (end < 0) throw new Error("unterminated block comment");
      flush();
      tokens.push({ kind: "comment", text: script.slice(i, end + 2) });
      i = end + 2;
    } else if (c === "#") {
      let end = i;
      while (end < script.length && script[end] !== "\n" && script[end] !== "\r") end++;
      flush();
      tokens.push({ kind: "comment", text: script.slice(i, end) });
      i = end;
    } else if (c === "@" && (SINGLE.has(script[i + 1] ?? "") || DOUBLE.has(script[i + 1] ?? ""))) {
      flush();
      const rest = script.slice(i);
      const m = /^@(.)\r?\n[\s\S]*?\r?\n\1@/.exec(rest);
      if (!m) throw new Error("unterminated here-string");
      tokens.push({ kind: "herestring", raw: m[0] });
      i += m[0].length;
    } else if (SINGLE.has(c)) {
      flush();
      let j = i + 1;
      let value = "";
      for (;;) {
        if (j >= script.length) throw new Error(`unterminated single-quoted string at ${i}`);
        const d = script[j]!;
        if (SINGLE.has(d)) {
          if (SINGLE.has(script[j + 1] ?? "")) {
            value += d;
            j += 2;
            continue;
          }
          break;
        }
        value += d;
        j++;
      }
      tokens.push({ kind: "single", raw: script.slice(i, j + 1), value });
      i = j + 1;
    } else if (DOUBLE.has(c)) {
      flush();
      let j = i + 1;
      for (;;) {
        if (j >= script.length) throw new Error(`unterminated double-quoted string at ${i}`);
        const d = script[j]!;
        if (d === "`") {
          j += 2;
          continue;
        }
        if (DOUBLE.has(d)) {
          if (DOUBLE.has(script[j + 1] ?? "")) {
            j += 2;
            continue;
          }
          break;
        }
        j++;
      }
      tokens.push({ kind: "double", raw: script.slice(i, j + 1) });
      i = j + 1;
    } else {
      code += c;
      i++;
    }
  }
  flush();
  return tokens;
}

/** The value of the first `$Name = '...'` assignment. */
export function assignedLiteral(tokens: readonly PsToken[], name: string): string | undefined {
  for (let k = 0; k + 1 < tokens.length; k++) {
    const t = tokens[k]!;
    const next = tokens[k + 1]!;
    if (t.kind === "code" && new RegExp(`(^|\\n)\\$${name} = $`).test(t.text) && next.kind === "single") return next.value;
  }
  return undefined;
}

/** Everything that is not inside a string literal: the part of the script that executes or comments. */
export function skeleton(tokens: readonly PsToken[]): string {
  return tokens.map((t) => (t.kind === "code" || t.kind === "comment" ? t.text : "<string>")).join("");
}
