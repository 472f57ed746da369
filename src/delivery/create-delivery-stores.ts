import { systemClock } from "../core/ports.js";
import { createMemoryStores, type DeliveryStores, type StoreOptions } from "./delivery-stores.js";

/** The stores `config.store` asks for; with redis, connects first and rejects when Redis cannot be reached. */
export async function createDeliveryStores<A>(options: StoreOptions<A>): Promise<DeliveryStores<A>> {
  if (options.config.store.type === "memory") return createMemoryStores<A>(options.config, options.clock ?? systemClock);
  // Loaded only when asked for: one replica with the memory store never loads a Redis client.
  const { createRedisStores } = await import("./redis/redis-stores.js");
  return createRedisStores(options);
}
