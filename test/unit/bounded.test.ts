import { describe, expect, it } from 'vitest';
import { BoundedOutput } from '../../src/infra/bounded-output.js';
import { YamlError, parseYamlBounded } from '../../src/infra/bounded-yaml.js';

describe('bounded output', () => {
  it('keeps everything while small, then its head and tail', () => {
    const small = new BoundedOutput({ head: 4, tail: 4 });
    small.push(Buffer.from('abcdef'));
    expect([small.complete, small.toString()]).toEqual([true, 'abcdef']);
    const big = new BoundedOutput({ head: 4, tail: 4 });
    for (const chunk of ['0123', '4567', '89ab', 'cdef']) big.push(Buffer.from(chunk));
    expect(big.total).toBe(16);
    expect(big.complete).toBe(false);
    expect(big.toString()).toBe('0123\n[… 8 bytes left out …]\ncdef');
    expect(new BoundedOutput({ head: 2, tail: 2 }).excerpt()).toBe('');
  });
});

describe('bounded YAML', () => {
  const limits = { cpuMs: 5000, maxNodes: 1000, maxAliases: 10 };
  const fails = async (text: string) => {
    try {
      await parseYamlBounded(text, limits);
    } catch (err) {
      return err instanceof YamlError ? err.kind : 'other';
    }
    return 'parsed';
  };

  it('parses the import format', async () => {
    expect(await parseYamlBounded('machines:\n  - name: a\n    port: 22\n', limits)).toEqual({ machines: [{ name: 'a', port: 22 }] });
  });

  it('refuses syntax errors and duplicate keys as syntax, and too many nodes or aliases as limits', async () => {
    expect(await fails('a: [1, 2')).toBe('syntax');
    expect(await fails('a: 1\na: 2\n')).toBe('syntax');
    expect(await fails(`a:\n${'  - x\n'.repeat(2000)}`)).toBe('limit');
    expect(await fails('a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n')).toBe('limit');
  });

  const manyKeys = `big:\n${Array.from({ length: 20_000 }, (_, i) => `  k${i}: v\n`).join('')}`;

  it('stops a parse that has used its CPU budget', async () => {
    await expect(parseYamlBounded(manyKeys, { cpuMs: 30, maxNodes: 100_000, maxAliases: 10 })).rejects.toThrow(/more than 30 ms of CPU/);
  });

  it('counts the parse’s own CPU, not the time the machine spends elsewhere', async () => {
    const parsed = parseYamlBounded(manyKeys, { cpuMs: 1000, maxNodes: 100_000, maxAliases: 10 });
    // This thread stops for longer than the budget (as a loaded machine keeps a parse from
    // running): the parse, far below the budget in CPU, is not refused for it.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2500);
    expect(Object.keys((await parsed) as { big: object }).length).toBe(1);
  });
});
