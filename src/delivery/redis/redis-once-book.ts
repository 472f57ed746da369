import { createHash } from "node:crypto";
import type { OnceBook } from "../once-book.js";
import type { RedisConnection } from "./redis-connection.js";

/** One-time ids in Redis (SET NX with the time to live): the first claim on any replica wins. */
export class RedisOnceBook implements OnceBook {
  constructor(private readonly connection: RedisConnection) {}

  async claim(id: string, ttlMs: number): Promise<boolean> {
    const key = `${this.connection.prefix}once:${createHash("sha256").update(id).digest("hex").slice(0, 40)}`;
    const reply = await this.connection.command("once.claim", "SET", [key, "1", "PX", Math.max(1, Math.ceil(ttlMs)), "NX"]);
    return reply === "OK";
  }
}
