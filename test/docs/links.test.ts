import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, anchors, docFiles, links, readDoc, slug } from "./markdown.js";

/** Where a relative link of `from` leads: the file (relative to ROOT) and the anchor, if any. */
function resolveLink(from: string, target: string): { file: string; anchor?: string } {
  const [path = "", anchor] = target.split("#", 2);
  const file = path === "" ? from : relative(ROOT, resolve(ROOT, dirname(from), decodeURIComponent(path)));
  return { file, anchor: anchor === undefined || anchor === "" ? undefined : decodeURIComponent(anchor) };
}

const EXTERNAL = /^(?:[a-z][a-z0-9+.-]*:|\/\/)/i;

describe("links in README.md and docs/", () => {
  it("when a heading is written, then its anchor follows GitHub's rules", () => {
    expect(slug("What each 429 `rate_limited` means")).toBe("what-each-429-rate_limited-means");
    expect(slug("Before the first tenant (operator, once)")).toBe("before-the-first-tenant-operator-once");
    expect(slug("4. Limit the app to the sender mailbox")).toBe("4-limit-the-app-to-the-sender-mailbox");
    expect(slug("Run it yourself / production")).toBe("run-it-yourself--production");
    expect([...anchors("## Method\n```sh\n# not a heading\n```\n## Method\n")]).toEqual(["method", "method-1"]);
  });

  for (const file of docFiles()) {
    it(`when ${file} links to a file in the repository, then the file exists (and the heading, for an #anchor)`, () => {
      const broken: string[] = [];
      for (const { target, line } of links(readDoc(file))) {
        if (EXTERNAL.test(target)) continue;
        const { file: to, anchor } = resolveLink(file, target);
        if (to.startsWith("..") || resolve(ROOT, to) === resolve(ROOT, "..")) {
          broken.push(`${file}:${line}: ${target} leaves the repository`);
          continue;
        }
        if (!existsSync(resolve(ROOT, to))) {
          broken.push(`${file}:${line}: ${target}: no such file`);
          continue;
        }
        if (anchor === undefined) continue;
        if (!to.endsWith(".md") || statSync(resolve(ROOT, to)).isDirectory()) continue;
        if (!anchors(readFileSync(resolve(ROOT, to), "utf8")).has(anchor)) broken.push(`${file}:${line}: ${target}: no heading #${anchor} in ${to}`);
      }
      expect(broken).toEqual([]);
    });
  }

  it("when the docs name a file, then it is one of this repository, never a path of a machine or a file kept elsewhere", () => {
    const outside = /CONTRACT\.md|\.\.\/shared\b|(?:^|[\s(`"'])\/(?:work|home|Users|root)\//m;
    for (const file of docFiles()) expect(readDoc(file), file).not.toMatch(outside);
  });
});
