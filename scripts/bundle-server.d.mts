/** What bundleServer wrote: its outdir, the files (relative to it), the npm packages and src/ files bundled in. */
export interface ServerBundle {
  readonly outdir: string;
  readonly files: string[];
  readonly packages: string[];
  /** The installed copies they came from, as lockfile keys (node_modules/a/node_modules/b). */
  readonly packageDirs: string[];
  /** The files of src/ in it. */
  readonly sources: string[];
}
/** Bundles src/server.ts and its dependencies into outdir (default dist/): server.js, its map, chunks/. */
export function bundleServer(options?: { outdir?: string }): Promise<ServerBundle>;
