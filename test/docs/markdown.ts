import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Reading the repository's Markdown the way GitHub renders it, for the docs tests. */

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The Markdown files the docs tests check: README.md, BENCHMARKS.md and docs/*.md (paths relative to ROOT). */
export function docFiles(): string[] {
  const docs = readdirSync(`${ROOT}docs`)
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`);
  return ["README.md", "BENCHMARKS.md", ...docs];
}

export function readDoc(path: string): string {
  return readFileSync(`${ROOT}${path}`, "utf8");
}

/** The text with fenced code blocks blanked out (their lines kept, so line numbers still match). */
export function withoutCodeBlocks(markdown: string): string {
  let fence: string | undefined;
  return markdown
    .split("\n")
    .map((line) => {
      const open = /^\s*(`{3,}|~{3,})/.exec(line);
      if (fence === undefined) {
        if (open) {
          fence = open[1]![0]!.repeat(open[1]!.length);
          return "";
        }
        return line;
      }
      if (open && open[1]!.startsWith(fence)) fence = undefined;
      return "";
    })
    .join("\n");
}

/**
 * GitHub's anchor for a heading text: the rendered text (no emphasis marks, backticks or link
 * targets) in lower case, punctuation dropped, each space a hyphen.
 */
export function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/[`*]/g, "")
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** The anchors of a Markdown text's headings, with GitHub's -1, -2 … for repeated ones. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of withoutCodeBlocks(markdown).split("\n")) {
    const m = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Inline links and images `[text](target)` outside code, with their line numbers. */
export function links(markdown: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = [];
  withoutCodeBlocks(markdown)
    .split("\n")
    .forEach((text, i) => {
      const line = text.replace(/`[^`]*`/g, "code");
      for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ target: m[1]!, line: i + 1 });
    });
  return out;
}

/** The section under the heading `title` (any level), up to the next heading of the same or a higher level. */
export function section(markdown: string, title: string): string {
  const lines = markdown.split("\n");
  const outsideCode = withoutCodeBlocks(markdown).split("\n");
  const start = outsideCode.findIndex((l) => /^#{1,6} /.test(l) && l.replace(/^#+ /, "").trim() === title);
  if (start < 0) return "";
  const level = /^#+/.exec(outsideCode[start]!)![0].length;
  const end = outsideCode.findIndex((l, i) => i > start && /^#{1,6} /.test(l) && /^#+/.exec(l)![0].length <= level);
  return lines.slice(start, end < 0 ? undefined : end).join("\n");
}
