/**
 * The repository is self-contained: every relative markdown link in README.md and docs/*.md
 * points at a file or folder inside it (never out of it, never at build output or anything else
 * git ignores), and every anchor names a heading of the file it points at. External links
 * (http, https, mailto) are not followed.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { describe, it } from "node:test";

const ROOT = resolve(import.meta.dirname, "..", "..", "..");

const DOCS = [
  "README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`),
];

/** The text outside fenced code blocks and inline code, where markdown links live. */
function prose(md: string): string {
  return md.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "").replace(/`[^`\n]*`/g, " ");
}

/** Every link target: inline `[text](target)` and `![alt](target)`, and `[ref]: target`. */
function linkTargets(md: string): string[] {
  const text = prose(md);
  const inline = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)];
  const refs = [...text.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm)];
  return [...inline, ...refs].map((m) => m[1] ?? "");
}

const EXTERNAL = /^(?:[a-z][a-z0-9+.-]*:|\/\/)/i;

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/`/g, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

/** The anchors of a markdown file's headings, numbered as GitHub numbers repeated ones. */
function anchors(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  const text = md.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, "");
  for (const m of text.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1] ?? "");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Paths .gitignore excludes (what a clone does not have): its simple patterns only. */
function ignored(rel: string): boolean {
  const parts = rel.split(sep);
  for (const raw of readFileSync(join(ROOT, ".gitignore"), "utf8").split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const pattern = line.replace(/\/$/, "");
    const glob = new RegExp(
      `^${pattern
        .replace(/^\//, "")
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*/g, "[^/]*")}$`,
    );
    if (pattern.startsWith("/")) {
      if (parts.some((_, i) => glob.test(parts.slice(0, i + 1).join("/")))) return true;
    } else if (parts.some((p) => glob.test(p))) return true;
  }
  return false;
}

/** What is wrong with a link of `file` (relative to the repository), or undefined. */
function problem(file: string, target: string): string | undefined {
  if (EXTERNAL.test(target)) return undefined;
  const [rawPath = "", anchor] = target.split("#", 2);
  const path = decodeURIComponent(rawPath);
  if (isAbsolute(path)) return "an absolute path";
  const abs = path ? resolve(ROOT, dirname(file), path) : join(ROOT, file);
  const rel = relative(ROOT, abs);
  if (rel.startsWith("..") || isAbsolute(rel)) return "points outside the repository";
  if (!existsSync(abs)) return "no such file";
  if (ignored(rel)) return "points at a file git ignores (a clone does not have it)";
  if (anchor && abs.endsWith(".md") && statSync(abs).isFile()) {
    if (!anchors(readFileSync(abs, "utf8")).has(anchor.toLowerCase()))
      return `no heading #${anchor} in ${rel}`;
  }
  return undefined;
}

describe("links in README.md and docs/", () => {
  it("finds the documents and their links (sanity)", () => {
    assert.ok(DOCS.includes("docs/wire-contract.md"));
    const readme = linkTargets(readFileSync(join(ROOT, "README.md"), "utf8"));
    assert.ok(readme.includes("docs/wire-contract.md"), JSON.stringify(readme));
    assert.ok(readme.includes("#cli"));
  });

  for (const file of DOCS) {
    it(`${file}: every relative link resolves inside the repository`, () => {
      const bad = linkTargets(readFileSync(join(ROOT, file), "utf8")).flatMap((t) => {
        const why = problem(file, t);
        return why ? [`${t}: ${why}`] : [];
      });
      assert.deepEqual(bad, [], `broken links in ${file}`);
    });
  }

  // The npm tarball ships README.md and docs/: their links must resolve in it too.
  const shipped = (
    JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { files: string[] }
  ).files;
  const inPackage = (file: string, target: string): boolean => {
    if (EXTERNAL.test(target)) return true;
    const path = decodeURIComponent(target.split("#", 2)[0] ?? "");
    const rel = relative(ROOT, path ? resolve(ROOT, dirname(file), path) : join(ROOT, file));
    return shipped.some((f) => rel === f || rel.startsWith(`${f}${sep}`));
  };
  for (const file of DOCS) {
    it(`${file}: is shipped in the npm package, and so is every file it links`, () => {
      assert.ok(inPackage(file, ""), `${file} is not in package.json's files`);
      const unshipped = linkTargets(readFileSync(join(ROOT, file), "utf8")).filter(
        (t) => !inPackage(file, t),
      );
      assert.deepEqual(unshipped, [], `links of ${file} to files the npm package leaves out`);
    });
  }

  it("checks what it should: outside, missing, ignored, anchors; external links pass", () => {
    assert.equal(
      problem("README.md", "../shared/design/wire-contract.md"),
      "points outside the repository",
    );
    assert.equal(problem("docs/events.md", "../../x.md"), "points outside the repository");
    assert.equal(problem("README.md", "docs/nothing.md"), "no such file");
    assert.equal(problem("README.md", "/etc/passwd"), "an absolute path");
    assert.match(problem("README.md", "node_modules") ?? "", /git ignores/);
    assert.match(problem("README.md", "docs/wire-contract.md#no-such-part") ?? "", /no heading/);
    assert.equal(problem("README.md", "#cli"), undefined);
    assert.equal(problem("docs/events.md", "wire-contract.md#idempotency"), undefined);
    assert.equal(problem("README.md", "https://example.com/x"), undefined);
  });

  it("reads links as markdown does: not in code, with titles and references", () => {
    const md = [
      'See [a](a.md) and ![b](img/b.png "B") and <https://x.y>.',
      "`[not](code.md)` and",
      "```",
      "[not](fenced.md)",
      "```",
      "[ref]: docs/c.md",
    ].join("\n");
    assert.deepEqual(linkTargets(md).sort(), ["a.md", "docs/c.md", "img/b.png"]);
    assert.equal(slug("Rejections, failures and bad input"), "rejections-failures-and-bad-input");
    assert.equal(slug("Failed: `vm.command-failed`"), "failed-vmcommand-failed");
    assert.equal(
      slug("Provisioning: what an administrator creates"),
      "provisioning-what-an-administrator-creates",
    );
  });
});
