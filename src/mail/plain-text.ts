/*
 * What a short text field of a message (subject, display name, header value, file name, the
 * local part of an address) may hold: text a person sees, nothing that hides or reorders it.
 *
 * Refused: C0 and C1 controls and DEL (a tab only where `tab` allows it; CR and LF only where
 * `lineBreaks` allows them, for fields whose own pattern already names them), U+2028/U+2029,
 * unpaired surrogates (they cannot be written as UTF-8), U+FFF9–U+FFFB and the noncharacters
 * U+FFFE/U+FFFF, and every Default_Ignorable_Code_Point: the bidirectional controls
 * (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C), zero-width characters (U+200B–U+200D,
 * U+2060, U+FEFF), the soft hyphen, fillers, tag characters and the like.
 *
 * Except where a script or an emoji needs them, which is where they do not hide anything:
 * - variation selectors (U+FE00–U+FE0F, U+E0100–U+E01EF) after a non-ASCII character (❤️) or
 *   in a keycap (1️⃣);
 * - Mongolian free variation selectors after a Mongolian letter;
 * - the zero-width joiner inside an emoji sequence (👩‍💻), and the zero-width joiner and
 *   non-joiner between two letters of a script that joins (Persian می‌خواهم, Devanagari
 *   क्‍ष) or after one of its combining marks (a virama: Malayalam ന്‍), never next to Latin,
 *   Greek or Cyrillic letters, whose look-alikes they could split;
 * - tag characters in an emoji tag sequence (the flag of Scotland, U+1F3F4 … U+E007F).
 */

/** Characters worth a second look; most text has none, and one regex pass finds them. */
const SUSPECT = /[\p{Cc}\p{Default_Ignorable_Code_Point}\p{Cs}\u2028\u2029\ufff9-\ufffb\ufffe\uffff]/gu;
const SUSPECT_ONE = /^[\p{Cc}\p{Default_Ignorable_Code_Point}\p{Cs}\u2028\u2029\ufff9-\ufffb\ufffe\uffff]$/u;
const JOINING_LETTER = /^[\p{L}\p{M}]$/u;
const CONFUSABLE_SCRIPT = /^[\p{Script=Latin}\p{Script=Greek}\p{Script=Cyrillic}\p{Script=Common}\p{Script=Inherited}]$/u;
const MARK = /^\p{M}$/u;
const PICTOGRAPH = /^\p{Extended_Pictographic}$/u;
const MONGOLIAN = /^\p{Script=Mongolian}$/u;

export interface PlainTextOptions {
  /** Tab allowed (subject, header values: white space of an unstructured header field). */
  readonly tab?: boolean;
  /** CR and LF left to the field's own "no line breaks" rule, so a caller hears of them once. */
  readonly lineBreaks?: boolean;
}

/** The code point before index `at` (a whole surrogate pair), or undefined at the start. */
function before(text: string, at: number): number | undefined {
  if (at === 0) return undefined;
  const low = text.charCodeAt(at - 1);
  if (low >= 0xdc00 && low <= 0xdfff && at >= 2) {
    const high = text.charCodeAt(at - 2);
    if (high >= 0xd800 && high <= 0xdbff) return text.codePointAt(at - 2);
  }
  return low;
}

/** The code point at `at`, or undefined past the end. */
function after(text: string, at: number): number | undefined {
  return at < text.length ? text.codePointAt(at) : undefined;
}

const is = (re: RegExp, cp: number | undefined): boolean => cp !== undefined && re.test(String.fromCodePoint(cp));

/** A letter or mark of a script whose letters join, where ZWJ/ZWNJ change how they render. */
const joiningLetter = (cp: number | undefined): boolean => is(JOINING_LETTER, cp) && !is(CONFUSABLE_SCRIPT, cp);

const isSelector = (cp: number | undefined): boolean => cp !== undefined && ((cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef));
const isSkinTone = (cp: number | undefined): boolean => cp !== undefined && cp >= 0x1f3fb && cp <= 0x1f3ff;
const width = (cp: number): number => (cp > 0xffff ? 2 : 1);

/** The end of an emoji before `at`: a pictograph, optionally followed by a skin tone and/or the emoji selector. */
function emojiBefore(text: string, at: number): boolean {
  let end = at;
  let cp = before(text, end);
  if (cp === 0xfe0f) cp = before(text, (end -= 1));
  if (isSkinTone(cp)) cp = before(text, (end -= 2));
  return is(PICTOGRAPH, cp);
}

/**
 * Where to go on when the suspect character `cp` at `at` is one a script or emoji needs there
 * (past a whole emoji tag sequence for a tag), or -1 when it is refused.
 */
function needed(text: string, at: number, cp: number): number {
  const next = at + width(cp);
  if (isSelector(cp)) {
    const prev = before(text, at);
    // One selector, after a visible non-ASCII character: never a run of them, never after ASCII text.
    if (prev !== undefined && prev > 0x7f && !isSelector(prev) && !is(SUSPECT_ONE, prev)) return next;
    // A keycap: #, * or a digit, the emoji selector, the enclosing keycap.
    return cp === 0xfe0f && prev !== undefined && /^[#*0-9]$/.test(String.fromCharCode(prev)) && after(text, next) === 0x20e3 ? next : -1;
  }
  if (cp === 0x180b || cp === 0x180c || cp === 0x180d || cp === 0x180f) return is(MONGOLIAN, before(text, at)) ? next : -1;
  if (cp === 0x200d && emojiBefore(text, at) && is(PICTOGRAPH, after(text, next))) return next;
  if (cp === 0x200c || cp === 0x200d) {
    // Between two letters of a joining script, or after a virama-like mark of one (Malayalam ന്‍ ends a word so).
    const prev = before(text, at);
    return joiningLetter(prev) && (joiningLetter(after(text, next)) || is(MARK, prev)) ? next : -1;
  }
  if (cp >= 0xe0020 && cp <= 0xe007e && before(text, at) === 0x1f3f4) {
    // U+1F3F4, tag characters, CANCEL TAG (the flags of Scotland, Wales, England): the whole sequence.
    let end = at;
    for (let t = after(text, end); t !== undefined && t >= 0xe0020 && t <= 0xe007e; t = after(text, end)) end += 2;
    return after(text, end) === 0xe007f ? end + 2 : -1;
  }
  return -1;
}

function kind(cp: number): string {
  if (cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)) return "a control character";
  if (cp === 0x2028 || cp === 0x2029) return "a line or paragraph separator";
  if (cp >= 0xd800 && cp <= 0xdfff) return "an unpaired surrogate";
  if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp === 0x200e || cp === 0x200f || cp === 0x061c) {
    return "a bidirectional formatting character";
  }
  return "an invisible character";
}

/** `U+202E` */
export function codePointName(cp: number): string {
  return `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * Why `text` is not plain text (naming the first offending character and where it is), or
 * undefined when it is fine. Linear in the text's length.
 */
export function plainTextProblem(text: string, options: PlainTextOptions = {}): string | undefined {
  // One global regex for every call (a `new RegExp` per call cost a runtime compile each time,
  // several per request): the loop never yields, and every exit puts lastIndex back to 0.
  const suspect = SUSPECT;
  try {
    for (let m = suspect.exec(text); m !== null; m = suspect.exec(text)) {
      const at = m.index;
      const cp = text.codePointAt(at)!;
      if (cp === 0x09 && options.tab === true) continue;
      if ((cp === 0x0a || cp === 0x0d) && options.lineBreaks === true) continue;
      const next = needed(text, at, cp);
      if (next !== -1) {
        suspect.lastIndex = next;
        continue;
      }
      return `must not contain ${kind(cp)} (${codePointName(cp)} at character ${at + 1})`;
    }
    return undefined;
  } finally {
    suspect.lastIndex = 0;
  }
}
