import { describe, expect, it } from "vitest";
import { isSenderAddress } from "./send-mail.js";

describe("isSenderAddress", () => {
  it.each([
    ["noreply@contoso.com", "noreply@contoso.com"],
    ["NoReply@Contoso.COM", "noreply@contoso.com"],
    ["noreply@contoso.com", "NoReply@Contoso.com"],
    ["zoë@bücher.de", "zoe\u0308@bu\u0308cher.de"],
  ])("when from is %j and the sender %j, then they match", (from, sender) => {
    expect(isSenderAddress(from, sender)).toBe(true);
  });

  it.each([
    ["a Kelvin sign for k (NFC alone would make it K)", "noreply@fabri\u212Aam.com", "noreply@fabrikam.com"],
    ["a fullwidth n", "\uff4eoreply@contoso.com", "noreply@contoso.com"],
    ["a long s", "noreply@conto\u017fo.com", "noreply@contoso.com"],
    ["a dotted capital I (lower case i plus U+0307)", "noreply@fabr\u0130kam.com", "noreply@fabrikam.com"],
    ["a Cyrillic o", "n\u043ereply@contoso.com", "noreply@contoso.com"],
    ["a decomposed ë against a sender with ë (from is not its own NFKC form)", "zoe\u0308@example.com", "zoë@example.com"],
    ["an upper-case non-ASCII letter", "ZOË@example.com", "zoë@example.com"],
    ["another mailbox", "ceo@contoso.com", "noreply@contoso.com"],
  ])("when from has %s, then it does not match", (_, from, sender) => {
    expect(isSenderAddress(from, sender)).toBe(false);
  });
});
