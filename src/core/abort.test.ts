import { afterEach, describe, expect, it, vi } from "vitest";
import { lazyTimeoutSignal } from "./abort.js";

describe("lazyTimeoutSignal", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("when the signal is never read, then no timer is set and dispose does nothing", () => {
    vi.useFakeTimers();
    let asked = 0;
    const limit = lazyTimeoutSignal(() => (asked++, 1_000), undefined, "deadline passed");
    expect(vi.getTimerCount()).toBe(0);
    limit.dispose();
    expect(asked).toBe(0);
  });

  it("when the signal is read, then it fires with a TimeoutError at the deadline, and the same signal is returned each time", () => {
    vi.useFakeTimers();
    const limit = lazyTimeoutSignal(() => 1_000, undefined, "deadline passed");
    const signal = limit.signal;
    expect(limit.signal).toBe(signal);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(999);
    expect(signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toMatchObject({ name: "TimeoutError", message: "deadline passed" });
  });

  it("when the outer signal aborts, then the made signal follows it; dispose clears the timer", () => {
    vi.useFakeTimers();
    const outer = new AbortController();
    const limit = lazyTimeoutSignal(() => 60_000, outer.signal, "deadline passed");
    const signal = limit.signal;
    outer.abort(new Error("caller went away"));
    expect(signal.aborted).toBe(true);
    expect((signal.reason as Error).message).toBe("caller went away");
    limit.dispose();
    expect(vi.getTimerCount()).toBe(0);
  });
});
