/**
 * Locates the first syntax error of a JSON text with its line and column, in words a person
 * understands. `JSON.parse` parses; this only explains why it refused (its own messages and
 * positions differ between Node versions).
 */

export interface JsonSyntaxError {
  /** 1-based. */
  readonly line: number;
  /** 1-based, in UTF-16 code units of the line. */
  readonly column: number;
  readonly message: string;
}

class Fail extends Error {
  constructor(
    readonly offset: number,
    message: string,
  ) {
    super(message);
  }
}

const MAX_DEPTH = 512;

/** The first syntax error of `text`, or undefined if it is valid JSON. */
export function findJsonSyntaxError(text: string): JsonSyntaxError | undefined {
  const scanner = new Scanner(text);
  try {
    scanner.document();
    return undefined;
  } catch (error) {
    if (!(error instanceof Fail)) throw error;
    return { ...lineAndColumn(text, error.offset), message: error.message };
  }
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i += 1) {
    if (text[i] === "\n") {
      line += 1;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

class Scanner {
  private at = 0;

  constructor(private readonly text: string) {}

  document(): void {
    this.whitespace();
    if (this.at >= this.text.length) throw new Fail(this.at, "the file is empty");
    this.value(0);
    this.whitespace();
    if (this.at < this.text.length) {
      throw new Fail(this.at, `unexpected ${this.describe()} after the end of the document`);
    }
  }

  private value(depth: number): void {
    if (depth > MAX_DEPTH) throw new Fail(this.at, `nested deeper than ${MAX_DEPTH} levels`);
    const c = this.text[this.at];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    for (const word of ["true", "false", "null"]) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return;
      }
    }
    throw new Fail(this.at, `expected a value but found ${this.describe()}`);
  }

  private object(depth: number): void {
    this.at += 1;
    this.whitespace();
    if (this.peek("}")) return;
    for (;;) {
      this.whitespace();
      if (this.text[this.at] !== '"') {
        const what = this.text[this.at] === "}" ? "a trailing comma" : this.describe();
        throw new Fail(this.at, `expected a key in double quotes but found ${what}`);
      }
      this.string();
      this.whitespace();
      if (!this.peek(":")) throw new Fail(this.at, `expected ':' but found ${this.describe()}`);
      this.whitespace();
      this.value(depth + 1);
      this.whitespace();
      if (this.peek("}")) return;
      if (!this.peek(",")) {
        throw new Fail(this.at, `expected ',' or '}' but found ${this.describe()}`);
      }
    }
  }

  private array(depth: number): void {
    this.at += 1;
    this.whitespace();
    if (this.peek("]")) return;
    for (;;) {
      this.whitespace();
      if (this.text[this.at] === "]") {
        throw new Fail(this.at, "expected a value but found a trailing comma");
      }
      this.value(depth + 1);
      this.whitespace();
      if (this.peek("]")) return;
      if (!this.peek(",")) {
        throw new Fail(this.at, `expected ',' or ']' but found ${this.describe()}`);
      }
    }
  }

  private string(): void {
    const start = this.at;
    this.at += 1;
    for (;;) {
      const c = this.text[this.at];
      if (c === undefined) throw new Fail(start, "unterminated string");
      if (c === '"') {
        this.at += 1;
        return;
      }
      if (c < " ") throw new Fail(this.at, "control character in a string (escape it)");
      if (c === "\\") this.escape();
      else this.at += 1;
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

  private number(): void {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.text.slice(this.at));
    if (match === null) throw new Fail(this.at, "invalid number");
    const next = this.text[this.at + match[0].length];
    if (next !== undefined && /[0-9.eE]/.test(next)) {
      throw new Fail(this.at, "invalid number (no leading zeros; digits after '.')");
    }
    this.at += match[0].length;
  }

  private whitespace(): void {
    while (this.at < this.text.length && " \t\n\r".includes(this.text[this.at] ?? "")) {
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
