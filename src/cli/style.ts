/**
 * Terminal styling for the CLI's own lines: ANSI only when the stream is a terminal and
 * NO_COLOR is unset or empty (no-color.org); plain text otherwise.
 */
export interface Style {
  readonly color: boolean;
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
}

export function styleFor(stream: { readonly isTTY?: boolean }, env: NodeJS.ProcessEnv): Style {
  const color = stream.isTTY === true && (env.NO_COLOR === undefined || env.NO_COLOR === "");
  const wrap = (open: number, close: number) => (text: string) =>
    color ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return { color, bold: wrap(1, 22), dim: wrap(2, 22), red: wrap(31, 39) };
}

/** `12.3 s` */
export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
