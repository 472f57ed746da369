import { domainToASCII, domainToUnicode } from "node:url";
import { codePointName, plainTextProblem } from "./plain-text.js";

/*
 * Which recipient addresses the relay passes on, and how many: the same rules for every door
 * (POST /send's schema and the SMTP door's MAIL FROM and RCPT TO).
 */

/** RFC 5321 §4.5.3.1 limits. */
export const MAX_LOCAL_PART = 64;
export const MAX_DOMAIN = 255;
export const MAX_ADDRESS = 254;
/** Exchange Online: at most 500 recipients (to + cc + bcc) per message. */
export const MAX_RECIPIENTS = 500;

// RFC 5322 atext (plus dots between atoms) and UTF-8 (SMTPUTF8); quoted local parts are not accepted.
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uFFFF-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uFFFF-]+)*$/;
const DOMAIN = /^(?:[A-Za-z0-9\u0080-\uFFFF](?:[A-Za-z0-9\u0080-\uFFFF-]*[A-Za-z0-9\u0080-\uFFFF])?)(?:\.[A-Za-z0-9\u0080-\uFFFF](?:[A-Za-z0-9\u0080-\uFFFF-]*[A-Za-z0-9\u0080-\uFFFF])?)*$/;
// eslint-disable-next-line no-control-regex -- every ASCII character, controls included (they are refused elsewhere)
const ASCII = /^[\x00-\x7f]*$/;

/** Why `address` is not a mailbox address we pass on, or undefined when it is fine. */
export function addressProblem(address: string): string | undefined {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\s\u0000-\u001f\u007f]/.test(address)) return "must not contain spaces, tabs or line breaks";
  const at = address.indexOf("@");
  if (at < 0 || address.indexOf("@", at + 1) >= 0) return "must contain exactly one @";
  if (address.length > MAX_ADDRESS) return `must be at most ${MAX_ADDRESS} characters`;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length === 0 || local.length > MAX_LOCAL_PART) return `the part before @ must be 1 to ${MAX_LOCAL_PART} characters`;
  if (domain.length === 0 || domain.length > MAX_DOMAIN) return `the domain must be 1 to ${MAX_DOMAIN} characters`;
  if (!LOCAL_PART.test(local)) return "the part before @ has characters or dots that are not allowed";
  if (!ASCII.test(local)) {
    const hidden = plainTextProblem(local);
    if (hidden !== undefined) return `the part before @ ${hidden}`;
    if (local.normalize("NFC") !== local) return `the part before @ ${notNormalized(local, "NFC")}`;
  }
  return domainProblem(domain);
}

const A_LABEL = /^xn--/i;
const HAS_A_LABEL = /(?:^|\.)xn--/i;

/**
 * Scripts told apart in a domain label. A label may use one of them, or Latin with the scripts
 * Japanese, Chinese and Korean names mix with it (UTS #39 "highly restrictive"): Latin with
 * Cyrillic or Greek is how look-alikes of ASCII names are made (pаypal.com with a Cyrillic а).
 */
const LABEL_SCRIPTS: readonly (readonly [string, RegExp])[] = [
  "Latin", "Greek", "Cyrillic", "Armenian", "Hebrew", "Arabic", "Syriac", "Thaana", "Nko", "Devanagari", "Bengali",
  "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao", "Tibetan",
  "Myanmar", "Georgian", "Hangul", "Ethiopic", "Cherokee", "Canadian_Aboriginal", "Ogham", "Runic", "Khmer", "Mongolian",
  "Hiragana", "Katakana", "Bopomofo", "Han", "Yi", "Tifinagh", "Coptic", "Vai", "Javanese", "Adlam", "Osage",
].map((name) => [name, new RegExp(`\\p{Script=${name}}`, "u")] as const);
const MIXABLE: readonly ReadonlySet<string>[] = [
  new Set(["Latin", "Han", "Hiragana", "Katakana"]),
  new Set(["Latin", "Han", "Bopomofo"]),
  new Set(["Latin", "Han", "Hangul"]),
];

/**
 * ASCII host names pass as they are. An internationalized domain is accepted as A-labels
 * (`xn--…`, which must decode) or as U-labels exactly as IDNA writes them: NFC, nothing IDNA
 * would map to something else (compatibility forms such as U+212A KELVIN SIGN or fullwidth
 * letters, non-ASCII upper case, ignored invisible characters), nothing it refuses (bidi
 * controls), and one script per label (see LABEL_SCRIPTS). A-labels are held to the same rules
 * once decoded, so a look-alike cannot hide in its ASCII form.
 */
function domainProblem(domain: string): string | undefined {
  if (!DOMAIN.test(domain)) return "the domain is not a valid host name";
  if (ASCII.test(domain) && !HAS_A_LABEL.test(domain)) return undefined;
  const hidden = plainTextProblem(domain);
  if (hidden !== undefined) return `the domain ${hidden}`;
  if (domain.normalize("NFC") !== domain) return `the domain ${notNormalized(domain, "NFC")}`;
  for (const label of domain.split(".")) {
    const problem = labelProblem(label);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function labelProblem(label: string): string | undefined {
  let unicode = label;
  if (ASCII.test(label)) {
    if (!A_LABEL.test(label)) return undefined;
    unicode = domainToUnicode(label);
    if (unicode === "" || unicode === label.toLowerCase() || domainToASCII(unicode) !== label.toLowerCase()) {
      return `the domain label "${label}" is not a valid A-label (xn--…)`;
    }
  } else {
    const ascii = domainToASCII(label);
    if (ascii === "") return `the domain label "${label}" is not a valid internationalized name`;
    if (domainToUnicode(ascii) !== asciiLowerCase(label)) {
      for (const ch of label) {
        if (ch.charCodeAt(0) > 0x7f && ch.normalize("NFKC").toLowerCase() !== ch) {
          return `the domain must not contain ${codePointName(ch.codePointAt(0)!)}, which stands for "${ch.normalize("NFKC")}" (write domains as IDNA does)`;
        }
      }
      return `the domain label "${label}" is not written as IDNA writes it (${domainToUnicode(ascii)})`;
    }
  }
  const scripts = LABEL_SCRIPTS.filter(([, re]) => re.test(unicode)).map(([name]) => name);
  if (scripts.length > 1 && !MIXABLE.some((set) => scripts.every((name) => set.has(name)))) {
    return `the domain label "${unicode}" mixes scripts (${scripts.join(", ")}), as look-alike domains do`;
  }
  return undefined;
}

/** Lower case for A–Z only: Unicode lower-casing maps other characters onto ASCII ones (U+212A KELVIN SIGN → k). */
function asciiLowerCase(text: string): string {
  return text.replace(/[A-Z]+/g, (upper) => upper.toLowerCase());
}

/**
 * "must not contain U+212A, which normalisation (NFC) turns into "K"" for the first character
 * `form` replaces by another, or "must be in Unicode normalization form C (NFC)" when only a
 * sequence (a letter with a separate combining mark) is not in that form.
 */
function notNormalized(text: string, form: "NFC" | "NFKC"): string {
  for (const ch of text) {
    const normal = ch.normalize(form);
    if (normal !== ch) return `must not contain ${codePointName(ch.codePointAt(0)!)}, which normalisation (${form}) turns into "${normal}"`;
  }
  return `must be in Unicode normalization form ${form === "NFC" ? "C (NFC)" : "KC (NFKC)"}`;
}

/**
 * Why `from` (a valid address) cannot be compared with a sender: it is not exactly its own
 * NFKC form. That refuses canonical singletons (U+212A KELVIN SIGN, which even NFC turns into
 * K; U+2126 OHM SIGN), compatibility characters (fullwidth letters, U+017F LONG S, ligatures)
 * and decomposed letters, each of which could look like, or normalise to, the configured
 * sender. Undefined when `from` is fine.
 */
export function senderLookAlikeProblem(from: string): string | undefined {
  if (from.normalize("NFKC") === from) return undefined;
  return `${notNormalized(from, "NFKC")}: write the sender exactly as it is configured`;
}
