/*
 * @peculiar/x509 2.x resolves its ASN.1 providers through tsyringe, which refuses to load
 * unless a Reflect metadata polyfill (reflect-metadata, core-js, …) is present. None is a
 * dependency of this project, so this module installs the four functions tsyringe and
 * tslib's `__metadata` actually call. It must be imported before "@peculiar/x509".
 * If `reflect-metadata` is ever added as a dependency, this becomes a no-op.
 */

type MetadataKey = unknown;
type Target = object;

interface ReflectMetadataApi {
  getMetadata?(key: MetadataKey, target: Target): unknown;
  getOwnMetadata?(key: MetadataKey, target: Target): unknown;
  defineMetadata?(key: MetadataKey, value: unknown, target: Target): void;
  hasMetadata?(key: MetadataKey, target: Target): boolean;
  metadata?(key: MetadataKey, value: unknown): (target: Target) => void;
}

const api = Reflect as typeof Reflect & ReflectMetadataApi;

if (typeof api.getMetadata !== "function") {
  const store = new WeakMap<Target, Map<MetadataKey, unknown>>();
  const own = (target: Target) => store.get(target);
  const getOwnMetadata = (key: MetadataKey, target: Target) => own(target)?.get(key);
  const getMetadata = (key: MetadataKey, target: Target): unknown => {
    for (let t: Target | null = target; t !== null; t = Object.getPrototypeOf(t) as Target | null) {
      const m = own(t);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
  const defineMetadata = (key: MetadataKey, value: unknown, target: Target) => {
    let m = own(target);
    if (m === undefined) store.set(target, (m = new Map()));
    m.set(key, value);
  };
  Object.assign(api, {
    getOwnMetadata,
    getMetadata,
    defineMetadata,
    hasMetadata: (key: MetadataKey, target: Target) => getMetadata(key, target) !== undefined,
    metadata: (key: MetadataKey, value: unknown) => (target: Target) => defineMetadata(key, value, target),
  } satisfies ReflectMetadataApi);
}

export {};
