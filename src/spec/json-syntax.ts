/**
 * The JSON parser of spec files: one linear pass that builds the value and knows where each
 * part came from, so that what `JSON.parse` lets through silently or dies on becomes a located
 * problem: a syntax error (line and column, in words a person understands), nesting deeper than
 * a spec can need (`JSON.stringify` of a 5,000-deep array overflows the stack), and a key given
 * twice in one object (`JSON.parse` keeps the last one without a word).
 */

export interface JsonLocation {
  /** 1-based. */
  readonly line: number;
  /** 1-based, in UTF-16 code units of the line. */
  readonly column: number;
}

export interface JsonSyntaxError extends JsonLocation {
  readonly message: string;
}

/** A key given twice in one object: where each copy is and the object's path. */
export interface DuplicateKey {
  readonly path: readonly (string | number)[];
  readonly at: JsonLocation;
  readonly first: JsonLocation;
}

export type JsonParseResult =
  | { readonly ok: true; readonly value: unknown; readonly duplicates: readonly DuplicateKey[] }
  | { readonly ok: false; readonly error: JsonSyntaxError };

/** Far deeper than any spec needs (root → listeners → listener → http → body is 4). */
export const MAX_JSON_DEPTH = 64;

class Fail extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

/** Parses `text`; the first syntax error stops it, duplicate keys are collected. */
export function parseJson(text: string): JsonParseResult {
  const parser = new Parser(text);
  try {
    const value = parser.document();
    return { ok: true, value, duplicates: parser.duplicates.map((d) => parser.locate(d)) };
  } catch (error) {
    if (!(error instanceof Fail)) throw error;
    return { ok: false, error: { ...parser.location(error.offset), message: error.message } };
  }
}

/** The first syntax error of `text`, or undefined if it is valid JSON. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const result = parseJson(text);
  return result.ok ? undefined : result.error;
}

type Path = (string | number)[];

interface RawDuplicate {
  readonly path: readonly (string | number)[];
  readonly offset: number;
  readonly firstOffset: number;
}

class Parser {
  private at = 0;
  readonly duplicates: RawDuplicate[] = [];
  /** Offsets where lines start, built once on demand: locating stays linear overall. */
  private lineStarts: number[] | undefined;

  constructor(private readonly text: string) {}

  document(): unknown {
    this.whitespace();
    if (this.at >= this.text.length) throw new Fail(this.at, "the file is empty");
    const value = this.value([]);
    this.whitespace();
    if (this.at < this.text.length) {
      throw new Fail(this.at, `unexpected ${this.describe()} after the end of the document`);
    }
    return value;
  }

  location(offset: number): JsonLocation {
    const starts = (this.lineStarts ??= lineStartsOf(this.text));
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((starts[mid] ?? 0) <= offset) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, column: offset - (starts[low] ?? 0) + 1 };
  }

  locate(d: RawDuplicate): DuplicateKey {
    return { path: d.path, at: this.location(d.offset), first: this.location(d.firstOffset) };
  }

  private value(path: Path): unknown {
    if (path.length >= MAX_JSON_DEPTH) {
      throw new Fail(this.at, `nested deeper than ${MAX_JSON_DEPTH} levels; a spec needs 4`);
    }
    const c = this.text[this.at];
    if (c === "{") return this.object(path);
    if (c === "[") return this.array(path);
    if (c === '"') return this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    for (const [word, value] of WORDS) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return value;
      }
    }
    throw new Fail(this.at, `expected a value but found ${this.describe()}`);
  }

  private object(path: Path): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    const seen = new Map<string, number>();
    this.at += 1;
    this.whitespace();
    if (this.peek("}")) return object;
    for (;;) {
      this.whitespace();
      if (this.text[this.at] !== '"') {
        const what = this.text[this.at] === "}" ? "a trailing comma" : this.describe();
        throw new Fail(this.at, `expected a key in double quotes but found ${what}`);
      }
      const keyOffset = this.at;
      const key = this.string();
      const firstOffset = seen.get(key);
      if (firstOffset === undefined) seen.set(key, keyOffset);
      else this.duplicates.push({ path: [...path, key], offset: keyOffset, firstOffset });
      this.whitespace();
      if (!this.peek(":")) throw new Fail(this.at, `expected ':' but found ${this.describe()}`);
      this.whitespace();
      path.push(key);
      const value = this.value(path);
      path.pop();
      // A "__proto__" key is data, as JSON.parse makes it; assigning it would set the prototype.
      if (key === "__proto__") {
        const data = { value, enumerable: true, writable: true, configurable: true };
        Object.defineProperty(object, key, data);
      } else object[key] = value;
      this.whitespace();
      if (this.peek("}")) return object;
      if (!this.peek(",")) {
        throw new Fail(this.at, `expected ',' or '}' but found ${this.describe()}`);
      }
    }
  }

  private array(path: Path): unknown[] {
    const array: unknown[] = [];
    this.at += 1;
    this.whitespace();
    if (this.peek("]")) return array;
    for (;;) {
      this.whitespace();
      if (this.text[this.at] === "]") {
        throw new Fail(this.at, "expected a value but found a trailing comma");
      }
      path.push(array.length);
      array.push(this.value(path));
      path.pop();
      this.whitespace();
      if (this.peek("]")) return array;
      if (!this.peek(",")) {
        throw new Fail(this.at, `expected ',' or ']' but found ${this.describe()}`);
      }
    }
  }

  private string(): string {
    const start = this.at;
    this.at += 1;
    let escaped = false;
    for (;;) {
      const c = this.text[this.at];
      if (c === undefined) throw new Fail(start, "unterminated string");
      if (c === '"') {
        this.at += 1;
        const literal = this.text.slice(start, this.at);
        return escaped ? (JSON.parse(literal) as string) : literal.slice(1, -1);
      }
      if (c < " ") throw new Fail(this.at, "control character in a string (escape it)");
      if (c === "\\") {
        this.escape();
        escaped = true;
      } else this.at += 1;
    }
  }

  private escape(): void {
    const c = this.text[this.at + 1];
    if (c !== undefined && '"\\/bfnrt'.includes(c)) {
      this.at += 2;
      return;
    }
    if (c === "u" && /^[0-9A-Fa-f]{4}$/.test(this.text.slice(this.at + 2, this.at + 6))) {
      this.at += 6;
      return;
    }
    throw new Fail(this.at, "invalid escape sequence in a string");
  }

  private number(): number {
    NUMBER.lastIndex = this.at;
    const match = NUMBER.exec(this.text);
    if (match === null) throw new Fail(this.at, "invalid number");
    const next = this.text[this.at + match[0].length];
    if (next !== undefined && /[0-9.eE]/.test(next)) {
      throw new Fail(this.at, "invalid number (no leading zeros; digits after '.')");
    }
    this.at += match[0].length;
    return Number(match[0]);
  }

  private whitespace(): void {
    for (;;) {
      const c = this.text[this.at];
      if (c !== " " && c !== "\t" && c !== "\n" && c !== "\r") return;
      this.at += 1;
    }
  }

  private peek(c: string): boolean {
    if (this.text[this.at] !== c) return false;
    this.at += 1;
    return true;
  }

  private describe(): string {
    const c = this.text[this.at];
    if (c === undefined) return "the end of the file";
    if (c === "/") return "'/' (comments are not allowed in JSON)";
    if (c === "'") return "a single quote (JSON strings use double quotes)";
    return `'${c}'`;
  }
}

const WORDS: readonly (readonly [string, unknown])[] = [
  ["true", true],
  ["false", false],
  ["null", null],
];

/** Sticky: matches at `lastIndex` only, without copying the rest of the text. */
const NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

function lineStartsOf(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}
