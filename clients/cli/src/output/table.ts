// Plain aligned columns, as `docker ps` or `kubectl get` print them: a header in capitals,
// two spaces between columns, no borders, so the output also greps and cuts well.
export type Cell = string | number | boolean | null | undefined;

export function formatTable(headers: string[], rows: Cell[][]): string {
  const text = rows.map((row) => headers.map((_, i) => cellText(row[i])));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...text.map(line)].join('\n');
}

function cellText(value: Cell): string {
  if (value === null || value === undefined || value === '') return '-';
  // One row per item: a value never breaks the table across lines.
  return String(value).replace(/[\r\n\t]+/g, ' ');
}

/** `key  value` lines, keys aligned: one object read by a person. */
export function formatFields(fields: [string, Cell][]): string {
  const width = Math.max(...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width + 1)}  ${cellText(v)}`).join('\n');
}
