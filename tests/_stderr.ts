// What a child `deno run` wrote itself to stderr: Deno's own `Download …` lines (printed while
// a cold npm cache fills, as on a fresh CI machine) are dropped.

/** The non-empty lines of `stderr`, without Deno's `Download` lines. */
export function ownLines(stderr: string): string[] {
  return stderr.trim().split("\n").filter((line) => !/\bDownload https?:\/\//.test(line));
}
